"""A package with a training module, run as `python -m tdpkg_train.train`."""
