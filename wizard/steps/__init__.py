"""The steps of `mkdoctor setup`, one module each, run in the order of
:func:`mkdoctor.wizard.flow.steps`; each has ``run(flow)``."""
