"""Model registry stage: numbered model versions with approval (local store or SageMaker Model Registry).

The stage's Dagster definitions are in ``registry.definitions``: the training stage imports
``registry.resources``, so this package must stay light to keep imports acyclic.
"""
