"""Documentation pages of the checks (MKnnn.md), shipped inside the package for `mkdoctor explain`."""
