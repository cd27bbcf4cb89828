"""The training run itself, apart from the platform: what runs in a training subprocess and in
the SageMaker training container.

It imports neither Dagster nor ``tagqa_assets`` (a test holds it to that), so the SageMaker
image installs this package alone (``pip install .[trainer]``, deploy/sagemaker/Dockerfile).

- ``entrypoint``: one YOLO training run (``python -m tagqa_trainer.entrypoint``), the one
  entry point of the local and the SageMaker training backends;
- ``ultralytics_tasks``: ONNX export and PyTorch predictions in a child process;
- ``offline``: Ultralytics kept offline and out of the user's home;
- ``params``: ``TrainingParams``, the training configuration as plain data.
"""
