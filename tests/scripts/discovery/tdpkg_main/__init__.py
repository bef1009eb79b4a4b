"""A package run as `python -m tdpkg_main` through its __main__.py."""
