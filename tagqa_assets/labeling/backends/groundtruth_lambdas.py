"""The AWS-owned pre-annotation and consolidation Lambdas of Ground Truth's bounding-box tasks.

Ground Truth's built-in task types run Lambdas that AWS publishes in one account per
region, named ``PRE-<task>`` and ``ACS-<task>`` (see ``PreHumanTaskLambdaArn`` and
``AnnotationConsolidationLambdaArn`` in the CreateLabelingJob API reference). The table
holds the regions the reference pipeline lists; for another region pass the account that
AWS documents for it (``lambda_account_id``) rather than guessing.
"""

from __future__ import annotations

BOUNDING_BOX = "BoundingBox"  # draw boxes from scratch
ADJUSTMENT = "AdjustmentBoundingBox"  # start from existing boxes (model suggestions) and correct them
VERIFICATION = "VerificationBoundingBox"  # judge another job's boxes: approve or reject
TASKS = (BOUNDING_BOX, ADJUSTMENT, VERIFICATION)

ACS_ACCOUNTS: dict[str, str] = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}


def lambda_account(region: str, override: str = "") -> str:
    """The account of the Ground Truth Lambdas in ``region``; raises ``ValueError`` for an unknown region without ``override``."""
    if override:
        if not (override.isdigit() and len(override) == 12):
            raise ValueError(f"Ground Truth Lambda account {override!r} is not a 12-digit AWS account id")
        return override
    try:
        return ACS_ACCOUNTS[region]
    except KeyError:
        raise ValueError(
            f"no Ground Truth Lambda account known for region {region!r} (known: {', '.join(sorted(ACS_ACCOUNTS))}); "
            "pass lambda_account_id with the account AWS documents for PRE-BoundingBox in that region"
        ) from None


def task_lambdas(region: str, task: str, account: str) -> tuple[str, str]:
    """``(pre-human-task ARN, annotation-consolidation ARN)`` of ``task`` in ``region``."""
    if task not in TASKS:
        raise ValueError(f"Ground Truth task {task!r} is not one of {TASKS}")
    partition = "aws-cn" if region.startswith("cn-") else "aws"
    base = f"arn:{partition}:lambda:{region}:{account}:function"
    return f"{base}:PRE-{task}", f"{base}:ACS-{task}"
