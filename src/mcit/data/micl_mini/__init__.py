"""micl-mini: procedurally generated tasks mirroring MICL (image, video and audio ×
captioning and QA) with MICL's two orders; `generate.generate_micl_mini` writes it, and
`mcit.data.builtin` registers it as the named benchmark `micl-mini`."""
