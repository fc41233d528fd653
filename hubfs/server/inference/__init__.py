"""Inference on the embedded hub (``hubfs serve --inference``): the Hub's task API and OpenAI-compatible chat
for models stored in this hub, loaded with :mod:`hubfs.loader` (see :mod:`.routes`)."""
