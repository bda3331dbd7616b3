"""A character's canon as training data, and (to come) a tuned model from it.

    split.held_out_scenes(character)          scenes no training sample may come from
    samples.canon_samples(prototype, held)    each answering line of the character as a sample
    dataset.write_dataset / read_dataset      a dataset folder: manifest.json + samples.jsonl
    dataset.export_rows(samples, fmt)         chatml, sharegpt or ChatHaruhi's {context, target}

A sample's prompt is what a real turn would send (the character's Session assembles it), so a
model tuned on it sees at training what it sees in chat. Heavy libraries (torch, peft) stay out
of this package's import.
"""
