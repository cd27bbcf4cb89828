"""Labeling backends: ``inbox``, ``labelstudio`` and ``groundtruth`` behind ``base.LabelingBackend``."""
