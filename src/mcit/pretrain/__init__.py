"""How the embedded tiny base is built: named recipes, a resumable staged build, the held-out
probe and the model card. Sits above `train/` (it reuses the Trainer's optimizer step) and
`models/` (the architecture)."""
