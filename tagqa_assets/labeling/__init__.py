"""Labeling stage: label store, label imports, labeling backends and jobs.

Its resources are shared with the datasets stage: ``labels`` (the label store) and
``labeling`` (the labeling backend), both configured from the environment.
"""

import dagster as dg

from tagqa_assets.labeling.assets import label_store, unlabeled_images
from tagqa_assets.labeling.checks import label_store_sanity
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.labeling.sensors import labeling_job_sensor

resources = {
    "labels": LabelStoreResource(
        backend=dg.EnvVar("TAGQA_LABEL_STORE"),
        feature_group_name=dg.EnvVar("TAGQA_FEATURE_GROUP"),
        feature_store_role_arn=dg.EnvVar("TAGQA_FEATURE_STORE_ROLE_ARN"),
        feature_store_offline_uri=dg.EnvVar("TAGQA_FEATURE_STORE_OFFLINE_URI"),
        aws_region=dg.EnvVar("TAGQA_AWS_REGION"),
        s3_endpoint_url=dg.EnvVar("TAGQA_S3_ENDPOINT_URL"),
    ),
    "labeling": LabelingResource(
        backend=dg.EnvVar("TAGQA_LABELING_BACKEND"),
        label_studio_url=dg.EnvVar("LABEL_STUDIO_URL"),
        label_studio_api_token=dg.EnvVar("LABEL_STUDIO_API_TOKEN"),
        groundtruth_role_arn=dg.EnvVar("TAGQA_GROUNDTRUTH_ROLE_ARN"),
        groundtruth_workteam_arn=dg.EnvVar("TAGQA_GROUNDTRUTH_WORKTEAM_ARN"),
        aws_region=dg.EnvVar("TAGQA_AWS_REGION"),
    ),
}

defs = dg.Definitions(
    assets=[label_store, unlabeled_images], asset_checks=[label_store_sanity], sensors=[labeling_job_sensor], resources=resources
)
