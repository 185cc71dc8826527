"""micl-mini: procedurally generated tasks mirroring MICL (image, audio and video ×
captioning and QA). So far: the audio tasks (`sounds`), the video tasks (`clips`) and the task
writer (`writer`); the image tasks, the benchmark folder with its two orders and its
registration come next."""
