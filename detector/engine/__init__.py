"""Training, evaluation and checkpointing: import the submodules directly (e.g. ``detector.engine.evaluator``)."""
