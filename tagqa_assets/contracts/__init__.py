"""The artifact contracts between stages, defined once (prose: docs/interfaces.md).

- ``keys``: the store key layout;
- ``labels``: the label record;
- ``datasets``: dataset version names, manifest and commit record;
- ``edge_runtime.contracts``: the model card, the inference result JSON and the device
  configuration (they live in the device package, which must not import this one).
"""
