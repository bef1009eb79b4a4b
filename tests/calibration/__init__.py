"""The calibration corpus: healthy training scripts and their faulty twins, with what torchdoctor
must say about each (manifest.py) and how a report is judged against it (judge.py)."""
