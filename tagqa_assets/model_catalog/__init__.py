"""The model catalog: a layer beneath the stages, like the store; it imports no stage.

- ``model_files``: model directories ``models/<model_id>/`` in the store (commit record last);
- ``registry``: the ``ModelRegistry`` interface and the local registry (records in the store);
- ``sagemaker``: the SageMaker Model Registry backend (one model package group);
- ``resources``: ``ModelRegistryResource`` (TAGQA_REGISTRY_BACKEND) and the same choice for
  command-line tools.

Training reads the champion here (warm start, evaluation against it), the registry stage
registers and approves versions here, deployment reads approved versions from here.
"""
