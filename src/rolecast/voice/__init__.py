"""Speech: the TTS contract and its backends (kokoro, espeak, openai), the spoken words of a
reply, translation through an LLM backend, and WAV files. Nothing heavy is imported here."""
