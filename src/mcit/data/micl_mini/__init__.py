"""micl-mini: procedurally generated tasks mirroring MICL (image, audio and video ×
captioning and QA). So far: the audio tasks (`sounds`) and the task writer (`writer`)."""
