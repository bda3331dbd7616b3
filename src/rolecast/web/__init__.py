"""The web page: chat with a character in the browser (Gradio), scene images beside the reply."""
