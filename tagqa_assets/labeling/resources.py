"""Resources of the labeling stage: which labeling backend and which label store to use."""

import dagster as dg

from tagqa_assets.labeling.backends.base import LabelingBackend
from tagqa_assets.labeling.label_store import LabelStore, LocalLabelStore
from tagqa_assets.storage import ObjectStore

LABELING_BACKENDS = ("inbox", "labelstudio", "groundtruth")
LABEL_STORE_BACKENDS = ("local", "featurestore")


class LabelStoreResource(dg.ConfigurableResource):
    """Where label records live: ``local`` (Parquet in the store) or ``featurestore`` (SageMaker)."""

    backend: str = "local"
    feature_group_name: str = "tagqa-labels"
    feature_store_role_arn: str = ""
    feature_store_offline_uri: str = ""
    aws_region: str = ""
    sagemaker_endpoint_url: str = ""
    s3_endpoint_url: str = ""

    def open(self, store: ObjectStore) -> LabelStore:
        """The configured label store; raises ``ValueError`` naming an unknown backend."""
        if self.backend == "local":
            return LocalLabelStore(store)
        if self.backend == "featurestore":
            import boto3

            from tagqa_assets.labeling.featurestore import FeatureStoreLabelStore

            region = self.aws_region or None
            return FeatureStoreLabelStore(
                store,
                feature_group_name=self.feature_group_name,
                role_arn=self.feature_store_role_arn,
                offline_store_s3_uri=self.feature_store_offline_uri,
                sagemaker_client=boto3.client("sagemaker", region_name=region, endpoint_url=self.sagemaker_endpoint_url or None),
                runtime_client=boto3.client("sagemaker-featurestore-runtime", region_name=region),
                s3_client=boto3.client("s3", region_name=region, endpoint_url=self.s3_endpoint_url or None),
            )
        raise ValueError(f"TAGQA_LABEL_STORE={self.backend!r} is not one of {LABEL_STORE_BACKENDS}")


class LabelingResource(dg.ConfigurableResource):
    """Who labels images: ``inbox`` (files), ``labelstudio`` (self-hosted) or ``groundtruth`` (AWS)."""

    backend: str = "inbox"
    label_studio_url: str = "http://127.0.0.1:8080"
    label_studio_api_token: str = ""
    label_studio_project_title: str = "tagqa scratches"
    groundtruth_role_arn: str = ""
    groundtruth_workteam_arn: str = ""
    groundtruth_verification: bool = True
    # Job names start with the deploy/aws stack's ProjectName: its IAM policy allows only those.
    groundtruth_name_prefix: str = "tagqa"
    # Account of the pre/post-annotation Lambdas, for regions outside the built-in table.
    groundtruth_lambda_account_id: str = ""
    aws_region: str = ""  # empty: us-east-1 for Ground Truth (its Lambda table needs a region)

    def open(self, store: ObjectStore, label_store: LabelStore) -> LabelingBackend:
        """The configured backend; raises ``ValueError`` naming the missing or wrong setting."""
        if self.backend == "inbox":
            from tagqa_assets.labeling.backends.inbox import InboxBackend

            return InboxBackend(store=store, label_store=label_store)
        if self.backend == "labelstudio":
            if not self.label_studio_api_token:
                raise ValueError("TAGQA_LABELING_BACKEND=labelstudio needs LABEL_STUDIO_API_TOKEN (tagqa settings)")
            from tagqa_assets.labeling.backends.labelstudio import LabelStudioBackend

            return LabelStudioBackend(
                url=self.label_studio_url,
                api_token=self.label_studio_api_token,
                store=store,
                project_title=self.label_studio_project_title,
            )
        if self.backend == "groundtruth":
            missing = [name for name, value in (("TAGQA_GROUNDTRUTH_ROLE_ARN", self.groundtruth_role_arn), ("TAGQA_GROUNDTRUTH_WORKTEAM_ARN", self.groundtruth_workteam_arn)) if not value]
            if missing:
                raise ValueError(f"TAGQA_LABELING_BACKEND=groundtruth needs {', '.join(missing)}")
            from tagqa_assets.labeling.backends.groundtruth import GroundTruthBackend

            return GroundTruthBackend(
                store=store,
                role_arn=self.groundtruth_role_arn,
                workteam_arn=self.groundtruth_workteam_arn,
                region=self.aws_region or "us-east-1",
                verification=self.groundtruth_verification,
                name_prefix=self.groundtruth_name_prefix,
                lambda_account_id=self.groundtruth_lambda_account_id,
            )
        raise ValueError(f"TAGQA_LABELING_BACKEND={self.backend!r} is not one of {LABELING_BACKENDS}")
