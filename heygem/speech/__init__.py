"""The sounds of a speech, per video frame: one place that the presenter study, the engines and the pipeline
all use from below (nothing here imports an engine).

* ``heygem.speech.loudness``: the voice band's loudness per frame (``voice_envelope``) and the mouth drive
  made of it (``mouth_drive``).
* ``heygem.speech.phones``: the phones PocketSphinx recognises (in child processes beside the study:
  ``BackgroundPhones``), their mouth classes per frame (``frame_visemes``) and the mouth shapes they give
  (``mouth_shapes``).

The submodules are imported by name: ``python -m heygem.speech.phones`` runs a recogniser child, which must
not find its own module imported already by this package.
"""
