"""The record of what run control did, written by the workers as it happens: steps
(``steps``), stages (``stages``), workflows (``workflows``) and runs (``runs``)."""
