"""Generate the field tables and example CloudEvents of docs/events.md from the contracts.

    uv run python docs/gen_events.py          # rewrite the generated blocks in place
    uv run python docs/gen_events.py --check  # exit 1 if a block is stale (tests/test_docs.py)

Every event section of events.md holds one block between ``<!-- generated:<type> -->`` and
``<!-- /generated:<type> -->``; everything outside those markers is written by hand. Each example
is built with ``make_event`` from the registered payload model, so it is exactly what the outbox
relay puts on Kafka. A new contract needs an entry in ``EXAMPLES`` and a section in events.md.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from runyard.shared import contracts
from runyard.shared.events import CloudEvent, EventPayload, make_event

EVENTS_MD = Path(__file__).with_name("events.md")

USER_ID = "3f6c2a9e-8b1d-4c7a-9e25-6d0b7f4a1c83"
SESSION_ID = "b7e1d0c4-5a2f-4f8e-8c3d-1e9a6b2f7d05"
API_KEY_ID = "5c9e7a31-2d4b-4e6f-a8c0-7b1d3f5e9a24"
DATASET_ID = "a1d4e8f2-6b3c-4d9e-b7a5-2c8f0e6d4b19"
EXPERIMENT_ID = "e2b8c6d4-1f3a-4b5c-9d7e-8a0f2c4e6b13"
EMAIL_ID = "9d3f1b7e-4c2a-4e8d-b6f0-5a7c9e1d3b28"
WEBHOOK_ID = "c4a2e6f8-0b1d-4f3a-8e5c-7d9b1a3c5e72"
IP = "203.0.113.24"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

USER = {
    "user_id": USER_ID,
    "username": "ada",
    "email": "ada@pumplab.example",
    "role": "user",
    "is_active": True,
    "timezone": "Europe/Berlin",
    "full_name": "Ada Lindqvist",
}
EXPERIMENT = {
    "experiment_id": EXPERIMENT_ID,
    "name": "cnn1d-bearing-faults-lr3e-4",
    "owner_id": USER_ID,
    "model_type": "cnn1d",
    "dataset_id": DATASET_ID,
    "owner_username": "ada",
    "owner_email": "ada@pumplab.example",
    "owner_full_name": "Ada Lindqvist",
    "dataset_name": "cwru-bearing-12k-drive-end",
}
DATASET = {
    "dataset_id": DATASET_ID,
    "owner_id": USER_ID,
    "name": "cwru-bearing-12k-drive-end",
    "description": "CWRU bearing data, 12 kHz, drive-end accelerometer",
}
PROJECT_ID = "4d2b8f6a-1c3e-4a5b-9d7f-0e2c4a6b8d13"
PROJECT = {
    "project_id": PROJECT_ID,
    "owner_id": USER_ID,
    "name": "bearing-faults",
    "description": "1D CNNs on the CWRU bearing data",
    "tags": {"team": "condition-monitoring"},
}
ARTIFACT = {
    "artifact_id": "8b1f3d5a-7c9e-4b2d-a6f8-1e3c5a7b9d24",
    "experiment_id": EXPERIMENT_ID,
    "owner_id": USER_ID,
    "path": "models/cnn1d.onnx",
    "size": 4718592,
    "sha256": "9f2c4e6a8b0d1f3e5a7c9b2d4f6e8a0c1b3d5f7e9a2c4b6d8f0e1a3c5b7d9f2e",
    "content_type": "application/octet-stream",
}
LOGGED_MODEL_ID = "m-3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"
LOGGED_MODEL_ARTIFACT = {
    "artifact_id": "2c4e6a8b-0d1f-4e3a-b5c7-9d1f3a5c7e92",
    "logged_model_id": LOGGED_MODEL_ID,
    "owner_id": USER_ID,
    "path": "model.pkl",
    "size": 1048576,
    "sha256": "4b6d8f0a2c4e6b8d0f1a3c5e7b9d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d",
    "content_type": "application/octet-stream",
}
ENDED = {
    **EXPERIMENT,
    "best_epoch": 41,
    "total_epochs": 50,
    "started_at": "2026-11-21T12:58:03.114Z",
}
CAMPAIGN = {
    "campaign_id": "7e3a5c1f-9b2d-4e6f-8a0c-2d4f6b8e0a17",
    "name": "cnn1d-lr-batch-search",
    "owner_id": USER_ID,
    "dataset_id": DATASET_ID,
    "owner_username": "ada",
    "owner_email": "ada@pumplab.example",
    "owner_full_name": "Ada Lindqvist",
}
JOB = {
    "job_id": "6a8c0e2f-4b6d-4f8a-9c1e-3f5b7d9a1c46",
    "owner_id": USER_ID,
    "owner_username": "ada",
    "owner_email": "ada@pumplab.example",
    "owner_full_name": "Ada Lindqvist",
}


REGISTERED_MODEL_ID = "7a3c5e9b-2d4f-4a6c-8e1b-3f5d7a9c1e62"
REGISTERED_MODEL = {
    "model_id": REGISTERED_MODEL_ID,
    "model_name": "pump-cnn",
    "owner_id": USER_ID,
    "owner_username": "ada",
    "owner_email": "ada@pumplab.example",
    "owner_full_name": "Ada Lindqvist",
}
MODEL_VERSION = {
    **REGISTERED_MODEL,
    "model_version": 7,
    "version_id": "4d6f8a0c-2e4b-4c6d-9f1a-5b7d9e1f3a68",
    "experiment_id": EXPERIMENT_ID,
    "experiment_name": "cnn1d-bearing-faults-lr3e-4",
    "metric_name": "val_accuracy",
    "metric_value": 0.962,
}


@dataclass(frozen=True)
class Example:
    subject: str
    time: str
    data: dict[str, Any]
    sequence: int | None = None


EXAMPLES: dict[str, Example] = {
    # --- auth
    "user.registered": Example(
        USER_ID,
        "2026-11-21T09:12:44.302Z",
        {**USER, "timezone": "UTC", "full_name": None},
        sequence=1,
    ),
    "user.updated": Example(USER_ID, "2026-11-21T09:20:05.918Z", USER, sequence=2),
    "user.deactivated": Example(
        USER_ID, "2026-11-28T17:45:10.006Z", {"user_id": USER_ID, "username": "ada"}, 5
    ),
    "login.succeeded": Example(
        USER_ID,
        "2026-11-21T09:13:02.557Z",
        {
            "user_id": USER_ID,
            "username": "ada",
            "session_id": SESSION_ID,
            "ip_address": IP,
            "user_agent": BROWSER,
        },
    ),
    "login.failed": Example(
        USER_ID,
        "2026-11-21T22:41:37.090Z",
        {
            "username_attempted": "ada",
            "user_id": USER_ID,
            "ip_address": "198.51.100.77",
            "user_agent": "python-requests/2.32.3",
            "reason": "invalid_password",
            "consecutive_failures": 3,
        },
    ),
    "account.locked": Example(
        USER_ID,
        "2026-11-21T22:41:59.412Z",
        {
            "user_id": USER_ID,
            "username": "ada",
            "locked_until": "2026-11-21T22:56:59.412Z",
            "consecutive_failures": 5,
            "ip_address": "198.51.100.77",
        },
        sequence=4,
    ),
    "two_factor.enabled": Example(
        USER_ID, "2026-11-21T09:31:18.720Z", {"user_id": USER_ID}, sequence=3
    ),
    "two_factor.disabled": Example(
        USER_ID, "2026-11-27T08:02:51.113Z", {"user_id": USER_ID}, sequence=6
    ),
    "api_key.created": Example(
        API_KEY_ID,
        "2026-11-21T10:02:27.845Z",
        {
            "key_id": API_KEY_ID,
            "user_id": USER_ID,
            "name": "training-cluster",
            "prefix": "ry_7Hq2xK9p",
            "scopes": ["experiments:read", "experiments:write"],
            "expires_at": "2027-05-21T00:00:00Z",
            "rate_limit": 600,
        },
    ),
    "api_key.revoked": Example(
        API_KEY_ID,
        "2026-12-02T15:19:40.231Z",
        {"key_id": API_KEY_ID, "user_id": USER_ID, "prefix": "ry_7Hq2xK9p"},
    ),
    "session.revoked": Example(
        SESSION_ID,
        "2026-11-21T18:07:12.660Z",
        {"session_id": SESSION_ID, "user_id": USER_ID, "reason": "logout"},
    ),
    "password.changed": Example(
        USER_ID,
        "2026-12-03T07:48:21.093Z",
        {"user_id": USER_ID, "username": "ada", "reason": "reset", "ip_address": IP},
    ),
    "password_reset.requested": Example(
        USER_ID,
        "2026-12-03T07:41:55.604Z",
        {
            "user_id": USER_ID,
            "username": "ada",
            "email": "ada@pumplab.example",
            "link_id": "Qm9yZWFsaXMtdGVzdC1saW5rLWlkLWV4YW1wbGUtMDE",
            "expires_at": "2026-12-03T08:11:55.604Z",
            "ip_address": IP,
        },
    ),
    "email_verification.requested": Example(
        USER_ID,
        "2026-11-21T09:12:44.302Z",
        {
            "user_id": USER_ID,
            "username": "ada",
            "email": "ada@pumplab.example",
            "link_id": "TGFrZS1Db25zdGFuY2UtdmVyaWZ5LWxpbmstaWQtMDI",
            "expires_at": "2026-11-22T09:12:44.302Z",
            "purpose": "signup",
        },
    ),
    "email.verified": Example(
        USER_ID,
        "2026-12-04T11:02:37.415Z",
        {
            "user_id": USER_ID,
            "username": "ada",
            "email": "ada@lindqvist.example",
            "previous_email": "ada@pumplab.example",
        },
    ),
    "registration.attempted": Example(
        USER_ID,
        "2026-12-05T19:27:03.880Z",
        {"user_id": USER_ID, "username": "ada", "ip_address": "198.51.100.77"},
    ),
    # --- experiments
    "dataset.created": Example(
        DATASET_ID,
        "2026-11-21T10:15:09.371Z",
        {**DATASET, "num_signals": 0, "fault_types": [], "severity_levels": []},
        sequence=1,
    ),
    "dataset.updated": Example(
        DATASET_ID,
        "2026-11-21T10:16:44.802Z",
        {
            **DATASET,
            "num_signals": 10000,
            "fault_types": ["ball", "inner_race", "normal", "outer_race"],
            "severity_levels": ["0.007in", "0.014in", "0.021in"],
            "changed": ["fault_types", "num_signals", "severity_levels"],
        },
        sequence=2,
    ),
    "dataset.deleted": Example(
        DATASET_ID,
        "2026-12-09T16:40:12.519Z",
        {"dataset_id": DATASET_ID, "owner_id": USER_ID, "name": "cwru-bearing-12k-drive-end"},
        sequence=3,
    ),
    "experiment.created": Example(
        EXPERIMENT_ID,
        "2026-11-21T12:57:49.006Z",
        {**EXPERIMENT, "status": "pending"},
        sequence=1,
    ),
    "experiment.updated": Example(
        EXPERIMENT_ID,
        "2026-11-21T14:20:31.775Z",
        {**EXPERIMENT, "status": "completed", "changed": ["model_path", "notes", "onnx_path"]},
        sequence=6,
    ),
    "experiment.deleted": Example(
        EXPERIMENT_ID, "2026-12-09T16:39:58.140Z", {**EXPERIMENT, "status": "completed"}, 7
    ),
    "experiment.restored": Example(
        EXPERIMENT_ID, "2026-12-09T16:41:12.402Z", {**EXPERIMENT, "status": "completed"}, 8
    ),
    "experiment.started": Example(
        EXPERIMENT_ID,
        "2026-11-21T12:58:03.114Z",
        {**EXPERIMENT, "status": "running", "started_at": "2026-11-21T12:58:03.114Z"},
        sequence=2,
    ),
    "experiment.paused": Example(
        EXPERIMENT_ID,
        "2026-11-21T13:20:41.550Z",
        {
            **EXPERIMENT,
            "status": "paused",
            "total_epochs": 17,
            "latest_metrics": {
                "train_loss": 0.1422,
                "val_loss": 0.1608,
                "train_accuracy": 0.9511,
                "val_accuracy": 0.9437,
            },
        },
        3,
    ),
    "experiment.resumed": Example(
        EXPERIMENT_ID,
        "2026-11-21T13:24:02.871Z",
        {**EXPERIMENT, "status": "running", "total_epochs": 17},
        4,
    ),
    "experiment.completed": Example(
        EXPERIMENT_ID,
        "2026-11-21T14:03:12.481Z",
        {
            **ENDED,
            "status": "completed",
            "final_metrics": {
                "val_accuracy": 0.9731,
                "val_loss": 0.0874,
                "train_accuracy": 0.9912,
                "f1_macro": 0.9688,
            },
            "ended_at": "2026-11-21T14:03:12.467Z",
            "duration_seconds": 3909.353,
        },
        sequence=5,
    ),
    "experiment.failed": Example(
        EXPERIMENT_ID,
        "2026-11-21T13:41:55.208Z",
        {
            **ENDED,
            "status": "failed",
            "final_metrics": {"val_accuracy": 0.8817, "val_loss": 0.3121},
            "best_epoch": 17,
            "total_epochs": 23,
            "ended_at": "2026-11-21T13:41:55.190Z",
            "duration_seconds": 2632.076,
            "error": "CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; 15.78 GiB total)",
        },
        sequence=5,
    ),
    "experiment.cancelled": Example(
        EXPERIMENT_ID,
        "2026-11-21T13:05:30.644Z",
        {
            **ENDED,
            "status": "cancelled",
            "final_metrics": {"train_loss": 0.6931, "val_loss": 0.7012},
            "best_epoch": 3,
            "total_epochs": 4,
            "ended_at": "2026-11-21T13:05:30.630Z",
            "duration_seconds": 447.516,
            "reason": "wrong learning-rate schedule",
        },
        sequence=3,
    ),
    "experiment.epochs_logged": Example(
        EXPERIMENT_ID,
        "2026-11-21T13:04:57.208Z",
        {
            "experiment_id": EXPERIMENT_ID,
            "owner_id": USER_ID,
            "name": "cnn1d-bearing-faults-lr3e-4",
            "status": "running",
            "first_epoch": 12,
            "last_epoch": 15,
            "epochs_written": 4,
            "epochs_inserted": 4,
            "total_epochs": 16,
            "latest_metrics": {
                "train_loss": 0.2143,
                "val_loss": 0.2871,
                "val_accuracy": 0.9113,
                "learning_rate": 0.0003,
            },
            "best_epoch": 14,
            "best_value": 0.2809,
            "logged_at": "2026-11-21T13:04:57.201Z",
        },
    ),
    "experiment.stalled": Example(
        EXPERIMENT_ID,
        "2026-11-21T13:35:07.412Z",
        {
            **EXPERIMENT,
            "status": "running",
            "total_epochs": 21,
            "latest_metrics": {
                "train_loss": 0.1307,
                "val_loss": 0.1552,
                "train_accuracy": 0.9544,
                "val_accuracy": 0.9461,
            },
            "started_at": "2026-11-21T12:58:03.114Z",
            "last_seen_at": "2026-11-21T13:24:55.031Z",
            "stalled_at": "2026-11-21T13:35:07.409Z",
            "stale_after_s": 600.0,
        },
        5,
    ),
    # --- experiments: HPO and NAS campaigns, dataset jobs
    "hpo_campaign.started": Example(
        "7e3a5c1f-9b2d-4e6f-8a0c-2d4f6b8e0a17",
        "2026-11-21T15:00:02.318Z",
        {
            **CAMPAIGN,
            "method": "bayesian",
            "metric": "val_accuracy",
            "direction": "maximize",
            "max_trials": 40,
        },
        sequence=2,
    ),
    "hpo_campaign.completed": Example(
        "7e3a5c1f-9b2d-4e6f-8a0c-2d4f6b8e0a17",
        "2026-11-21T22:47:51.904Z",
        {
            **CAMPAIGN,
            "method": "bayesian",
            "metric": "val_accuracy",
            "direction": "maximize",
            "trials_completed": 40,
            "trials_total": 40,
            "best_experiment_id": EXPERIMENT_ID,
            "best_value": 0.9812,
            "best_params": {"learning_rate": 0.00031, "batch_size": 64, "optimizer": "adamw"},
            "reason": "budget_trials",
        },
        sequence=83,
    ),
    "nas_campaign.completed": Example(
        "1b9d3f5a-7c2e-4a8b-9d0f-6e2a4c8b0d35",
        "2026-11-22T04:12:40.055Z",
        {
            **CAMPAIGN,
            "campaign_id": "1b9d3f5a-7c2e-4a8b-9d0f-6e2a4c8b0d35",
            "name": "cnn1d-nas-evolution",
            "search_algorithm": "evolution",
            "num_trials": 30,
            "trials_completed": 30,
            "best_trial_id": "4d6f8b0a-2c4e-4f6a-8b0d-3e5a7c9e1b42",
            "best_accuracy": 0.9774,
            "best_architecture": {
                "layers": [
                    {"type": "conv1d", "filters": 32, "kernel": 7},
                    {"type": "conv1d", "filters": 64, "kernel": 5},
                    {"type": "dense", "units": 128},
                ]
            },
        },
        sequence=31,
    ),
    "nas_trial.completed": Example(
        "1b9d3f5a-7c2e-4a8b-9d0f-6e2a4c8b0d35",
        "2026-11-22T03:58:12.907Z",
        {
            **CAMPAIGN,
            "campaign_id": "1b9d3f5a-7c2e-4a8b-9d0f-6e2a4c8b0d35",
            "name": "cnn1d-nas-evolution",
            "trial_id": "4d6f8b0a-2c4e-4f6a-8b0d-3e5a7c9e1b42",
            "trial_number": 17,
            "validation_accuracy": 0.9774,
            "validation_loss": 0.0712,
            "is_best": True,
            "best_accuracy": 0.9774,
            "trials_completed": 18,
            "num_trials": 30,
            "campaign_status": "running",
        },
        sequence=19,
    ),
    "dataset_generation.progressed": Example(
        "6a8c0e2f-4b6d-4f8a-9c1e-3f5b7d9a1c46",
        "2026-11-21T11:20:35.377Z",
        {
            "job_id": JOB["job_id"],
            "name": "synthetic-pump-5-faults",
            "owner_id": USER_ID,
            "status": "running",
            "progress": 54,
            "items_done": 300,
            "items_total": 500,
            "stage": "generating",
            "attempts": 1,
            "started_at": "2026-11-21T11:20:32.791Z",
        },
    ),
    "dataset_import.progressed": Example(
        "8c0e2a4b-6d8f-4a0c-8e2b-5a7c9e1b3d68",
        "2026-11-21T10:05:10.884Z",
        {
            "job_id": "8c0e2a4b-6d8f-4a0c-8e2b-5a7c9e1b3d68",
            "name": "field-recordings-pump-7",
            "owner_id": USER_ID,
            "status": "running",
            "progress": 90,
            "items_done": 3,
            "items_total": 3,
            "stage": "storing",
            "attempts": 1,
            "started_at": "2026-11-21T10:05:10.608Z",
        },
    ),
    "dataset_generation.completed": Example(
        "6a8c0e2f-4b6d-4f8a-9c1e-3f5b7d9a1c46",
        "2026-11-21T11:20:37.612Z",
        {
            **JOB,
            "name": "synthetic-pump-5-faults",
            "duration_seconds": 4.821,
            "dataset_id": DATASET_ID,
            "num_signals": 500,
            "fault_types": ["bearing_defect", "cavitation", "imbalance", "misalignment", "normal"],
            "output_path": "generations/6a8c0e2f-4b6d-4f8a-9c1e-3f5b7d9a1c46",
        },
    ),
    "dataset_generation.failed": Example(
        "6a8c0e2f-4b6d-4f8a-9c1e-3f5b7d9a1c46",
        "2026-11-21T11:20:35.104Z",
        {
            **JOB,
            "name": "synthetic-pump-5-faults",
            "duration_seconds": 2.306,
            "error": "OSError: [Errno 28] No space left on device",
        },
    ),
    "dataset_import.completed": Example(
        "8c0e2a4b-6d8f-4a0c-8e2b-5a7c9e1b3d68",
        "2026-11-21T10:05:12.377Z",
        {
            **JOB,
            "job_id": "8c0e2a4b-6d8f-4a0c-8e2b-5a7c9e1b3d68",
            "name": "field-recordings-pump-7",
            "duration_seconds": 1.934,
            "dataset_id": DATASET_ID,
            "num_files": 1,
            "num_signals": 240,
        },
    ),
    "dataset_import.failed": Example(
        "8c0e2a4b-6d8f-4a0c-8e2b-5a7c9e1b3d68",
        "2026-11-21T10:05:11.020Z",
        {
            **JOB,
            "job_id": "8c0e2a4b-6d8f-4a0c-8e2b-5a7c9e1b3d68",
            "name": "field-recordings-pump-7",
            "duration_seconds": 0.412,
            "error": "2 invalid rows; nothing was imported",
            "errors": [
                {"file": "pump7.csv", "row": 14, "msg": "label is empty"},
                {"file": "pump7.csv", "row": 88, "msg": "value 'n/a' is not a number"},
            ],
        },
    ),
    # --- experiments: projects and artifacts
    "project.created": Example(
        PROJECT_ID,
        "2026-11-21T12:50:02.481Z",
        {**PROJECT, "lifecycle_stage": "active"},
        sequence=1,
    ),
    "project.updated": Example(
        PROJECT_ID,
        "2026-11-22T08:14:37.105Z",
        {**PROJECT, "lifecycle_stage": "active", "changed": ["description"]},
        sequence=2,
    ),
    "project.deleted": Example(
        PROJECT_ID,
        "2026-12-10T17:02:55.730Z",
        {**PROJECT, "lifecycle_stage": "deleted"},
        sequence=3,
    ),
    "project.restored": Example(
        PROJECT_ID,
        "2026-12-11T09:31:20.012Z",
        {**PROJECT, "lifecycle_stage": "active"},
        sequence=4,
    ),
    "artifact.created": Example(
        EXPERIMENT_ID,
        "2026-11-21T14:02:10.377Z",
        {**ARTIFACT, "replaced": False},
    ),
    "artifact.deleted": Example(EXPERIMENT_ID, "2026-11-30T10:45:03.840Z", ARTIFACT),
    "logged_model_artifact.created": Example(
        LOGGED_MODEL_ID,
        "2026-11-21T14:05:41.208Z",
        {**LOGGED_MODEL_ARTIFACT, "replaced": False},
    ),
    "logged_model_artifact.deleted": Example(
        LOGGED_MODEL_ID, "2026-11-30T10:47:19.562Z", LOGGED_MODEL_ARTIFACT
    ),
    # --- experiments: alert rules
    "alert.triggered": Example(
        EXPERIMENT_ID,
        "2026-11-21T13:41:22.907Z",
        {
            "alert_id": "6e0a2c4b-8d1f-4a3e-9b5c-7f1d3e5a7c90",
            "rule_id": "1c3e5a7b-9d2f-4b6e-8a0c-4e6f8a0b2d35",
            "rule_name": "loss runaway",
            "kind": "divergence",
            "severity": "critical",
            "owner_id": USER_ID,
            "experiment_id": EXPERIMENT_ID,
            "name": "cnn1d-bearing-faults-lr3e-4",
            "project_id": PROJECT_ID,
            "epoch": 41,
            "values": {
                "val_loss": 0.4512,
                "reference": 0.327,
                "change_percent": 37.98,
                "epochs": 5,
            },
            "summary": "val_loss diverged in cnn1d-bearing-faults-lr3e-4: +38 % over 5 epochs "
            "(epoch 41)",
        },
    ),
    "alert.resolved": Example(
        EXPERIMENT_ID,
        "2026-11-21T13:44:09.135Z",
        {
            "alert_id": "2f4a6c8e-0b1d-4e3f-a5c7-9e1b3d5f7a08",
            "rule_id": "1c3e5a7b-9d2f-4b6e-8a0c-4e6f8a0b2d35",
            "rule_name": "loss runaway",
            "kind": "divergence",
            "severity": "critical",
            "owner_id": USER_ID,
            "experiment_id": EXPERIMENT_ID,
            "name": "cnn1d-bearing-faults-lr3e-4",
            "project_id": PROJECT_ID,
            "epoch": 44,
            "values": {
                "val_loss": 0.3311,
                "reference": 0.3402,
                "change_percent": -2.67,
                "epochs": 5,
            },
            "summary": "loss runaway cleared in cnn1d-bearing-faults-lr3e-4 (epoch 44)",
        },
    ),
    # --- experiments: the model registry
    "model.registered": Example(
        REGISTERED_MODEL_ID,
        "2026-12-01T09:30:12.114Z",
        {**REGISTERED_MODEL, "description": "1-D CNN for bearing faults"},
    ),
    "model_version.created": Example(
        REGISTERED_MODEL_ID,
        "2026-12-01T09:31:40.502Z",
        {
            **MODEL_VERSION,
            "artifact_path": "model",
            "status": "ready",
            "size": 4718811,
            "sha256": "3c5e7a9b1d2f4e6a8c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d1f3a5c7e9b0d2f4a",
        },
    ),
    "model_version.alias_set": Example(
        REGISTERED_MODEL_ID,
        "2026-12-01T09:35:03.871Z",
        {**MODEL_VERSION, "alias": "champion", "previous_version": 6},
    ),
    "model_version.alias_removed": Example(
        REGISTERED_MODEL_ID,
        "2026-12-02T16:20:44.019Z",
        {**MODEL_VERSION, "alias": "challenger"},
    ),
    "model_version.archived": Example(
        REGISTERED_MODEL_ID, "2026-12-03T11:05:29.660Z", {**MODEL_VERSION, "model_version": 3}
    ),
    # --- experiments: the prediction log of model versions
    "model_version.drift_detected": Example(
        "7a3c5e9b-2d4f-4a6c-8e1b-3f5d7a9c1e62",
        "2026-12-04T06:05:11.482Z",
        {
            "model_id": "7a3c5e9b-2d4f-4a6c-8e1b-3f5d7a9c1e62",
            "model_name": "pump-cnn",
            "owner_id": USER_ID,
            "owner_username": "ada",
            "owner_email": "ada@pumplab.example",
            "owner_full_name": "Ada Lindqvist",
            "model_version": 3,
            "version_id": "2e4a6c8f-0b1d-4e3f-9a5c-7d9f1b3e5a84",
            "psi": 0.274,
            "threshold": 0.2,
            "window_from": "2026-12-03T06:05:11.482Z",
            "window_to": "2026-12-04T06:05:11.482Z",
            "window_count": 48210,
            "baseline_from": "2026-11-24T09:30:02.117Z",
            "baseline_to": "2026-11-25T09:30:02.117Z",
            "baseline_count": 51377,
        },
    ),
    # --- notifications
    "email.sent": Example(
        EMAIL_ID,
        "2026-11-21T14:03:13.102Z",
        {
            "email_id": EMAIL_ID,
            "user_id": USER_ID,
            "to": "ada@pumplab.example",
            "subject": 'Experiment "cnn1d-bearing-faults-lr3e-4" completed',
            "trigger_event_type": "experiment.completed",
            "trigger_event_id": "0b5e6f0e-5a8c-4d51-9d0f-3c2b7a1e4f66",
            "message_id": "<176373499310.412.4411072205197@runyard.local>",
        },
    ),
    "email.failed": Example(
        EMAIL_ID,
        "2026-11-21T19:48:26.533Z",
        {
            "email_id": EMAIL_ID,
            "user_id": USER_ID,
            "to": "ada@pumplab.example",
            "subject": "Failed sign-in attempt on your Runyard account",
            "trigger_event_type": "login.failed",
            "trigger_event_id": "7a1c3e5f-9b2d-4f6a-8c0e-1d3f5b7a9c2e",
            "error": "450 4.2.0 <ada@pumplab.example>: Recipient address rejected: greylisted",
            "retry_count": 8,
        },
    ),
    "notification_preference.updated": Example(
        USER_ID,
        "2026-11-21T09:40:17.295Z",
        {
            "user_id": USER_ID,
            "notification_event_type": "experiment.completed",
            "email_enabled": True,
            "in_app_enabled": True,
            "slack_enabled": False,
            "webhook_enabled": True,
            "email_frequency": "immediate",
        },
    ),
    "notification.created": Example(
        USER_ID,
        "2026-11-21T14:03:12.655Z",
        {
            "notification_id": "5e2b7c1a-9d4f-4a8e-b6c3-0f1d2e3a4b5c",
            "user_id": USER_ID,
            "trigger_event_type": "experiment.completed",
            "trigger_event_id": "0b5e6f0e-5a8c-4d51-9d0f-3c2b7a1e4f66",
            "title": "Experiment completed",
            "unread_count": 3,
        },
    ),
    "notification.read": Example(
        USER_ID,
        "2026-11-21T14:09:40.318Z",
        {
            "user_id": USER_ID,
            "notification_id": None,
            "marked_read": 3,
            "unread_count": 0,
        },
    ),
    # --- webhooks
    "webhook.endpoint_disabled": Example(
        WEBHOOK_ID,
        "2026-11-23T03:12:08.740Z",
        {
            "webhook_id": WEBHOOK_ID,
            "owner_id": USER_ID,
            "name": "lab-slack",
            "url": "https://hooks.slack.com/services/T0000/B0000/***",
            "reason": "too_many_consecutive_failures",
            "consecutive_failures": 20,
        },
    ),
    "webhook.deliveries_updated": Example(
        WEBHOOK_ID,
        "2026-11-21T14:03:13.262Z",
        {
            "webhook_id": WEBHOOK_ID,
            "owner_id": USER_ID,
            "attempts": 3,
            "succeeded": 2,
            "failed": 0,
            "retrying": 1,
            "latest": [
                {
                    "delivery_id": "0b2d4f6a-8c1e-4a3b-9d5f-7e9a1c3b5d08",
                    "event_id": "d0039928-6a2b-4c1d-8e3f-5a7b9c1d3e50",
                    "event_type": "experiment.completed",
                    "status": "succeeded",
                    "attempt_number": 1,
                    "status_code": 200,
                },
                {
                    "delivery_id": "2d4f6a8c-0e1b-4c3d-8f5a-9b1c3d5e7f20",
                    "event_id": "f2a4c6e8-0b1d-4e3f-9a5b-7c9d1e3f5a72",
                    "event_type": "experiment.epochs_logged",
                    "status": "succeeded",
                    "attempt_number": 1,
                    "status_code": 202,
                },
                {
                    "delivery_id": "4f6a8c0e-2b1d-4e3f-8a5b-1c3d5e7f9a42",
                    "event_id": "a4c6e8f0-2d1b-4f3e-8b5a-9d1e3f5a7c94",
                    "event_type": "experiment.failed",
                    "status": "pending",
                    "attempt_number": 2,
                    "status_code": None,
                },
            ],
            "first_at": "2026-11-21T14:03:12.702Z",
            "last_at": "2026-11-21T14:03:12.988Z",
        },
    ),
    "webhook.test": Example(
        WEBHOOK_ID,
        "2026-11-21T10:30:00.120Z",
        {"webhook_id": WEBHOOK_ID, "message": "This is a test event from Runyard."},
    ),
    # --- gateway
    "api_key.used": Example(
        API_KEY_ID,
        "2026-11-21T13:02:44.918Z",
        {
            "key_id": API_KEY_ID,
            "user_id": USER_ID,
            "method": "POST",
            "route": f"/api/v1/experiments/{EXPERIMENT_ID}/runs",
            "status": 201,
            "latency_ms": 18.4,
            "ip_address": "10.20.3.17",
        },
    ),
}


def registered() -> dict[str, type[EventPayload]]:
    """Every registered contract by event type (latest version wins)."""
    found: dict[str, type[EventPayload]] = {}
    for (event_type, version), model in sorted(contracts.all_contracts().items()):
        if event_type not in found or version > found[event_type].version:
            found[event_type] = model
    return found


#: contracts modules named after a feature, not after the service that publishes them
MODULE_PRODUCERS = {"alerts": "experiments", "models": "experiments"}


def producer_of(model: type[EventPayload]) -> str:
    """The service whose contracts module declares ``model`` (``runyard.shared.contracts.X``)."""
    module = model.__module__.rsplit(".", 1)[-1]
    return MODULE_PRODUCERS.get(module, module)


def example_event(event_type: str) -> CloudEvent:
    model = registered()[event_type]
    example = EXAMPLES[event_type]
    return make_event(
        model.model_validate(example.data),
        source=f"/runyard/{producer_of(model)}",
        subject=example.subject,
        sequence=example.sequence,
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"https://runyard.example/events/{event_type}"),
        time=datetime.fromisoformat(example.time),
    )


def example_json(event_type: str) -> str:
    """The record value as the relay publishes it, indented for reading."""
    return json.dumps(json.loads(example_event(event_type).to_json()), indent=2)


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        joined = " or ".join(type_name(a) for a in args if a is not type(None))
        return f"{joined} or null" if type(None) in args else joined
    if origin is list:
        return f"array of {type_name(args[0])}"
    if origin is dict:
        return "object"
    names: dict[Any, str] = {
        uuid.UUID: "uuid",
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        datetime: "date-time",
    }
    return names.get(annotation) or str(getattr(annotation, "__name__", annotation))


def field_table(model: type[EventPayload]) -> str:
    rows = ["| Field | Type | Required | Default |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        required = field.is_required()
        value = None if required else field.get_default(call_default_factory=True)
        default = "—" if required else f"`{json.dumps(value)}`"
        rows.append(
            f"| `{name}` | {type_name(field.annotation)} | {'yes' if required else 'no'} "
            f"| {default} |"
        )
    return "\n".join(rows)


def render_block(event_type: str) -> str:
    model = registered()[event_type]
    return (
        f"<!-- generated:{event_type} -->\n"
        f"`dataschema` `{model.dataschema()}`\n\n"
        f"{field_table(model)}\n\n"
        f"```json\n{example_json(event_type)}\n```\n"
        f"<!-- /generated:{event_type} -->"
    )


BLOCK = re.compile(r"<!-- generated:(?P<type>[\w.]+) -->\n.*?<!-- /generated:(?P=type) -->", re.S)


def problems(text: str) -> list[str]:
    """What is missing or stale in events.md ``text``; empty when it is up to date."""
    types_ = registered()
    found = {m["type"]: m[0] for m in BLOCK.finditer(text)}
    out = [f"{t}: no example in EXAMPLES (docs/gen_events.py)" for t in types_ if t not in EXAMPLES]
    out += [f"{t}: EXAMPLES entry for an unregistered type" for t in EXAMPLES if t not in types_]
    out += [f"{t}: no generated block in events.md" for t in types_ if t not in found]
    out += [f"{t}: generated block for an unregistered type" for t in found if t not in types_]
    out += [
        f"{t}: generated block is stale"
        for t, block in found.items()
        if t in types_ and t in EXAMPLES and block != render_block(t)
    ]
    return out


def regenerate(text: str) -> str:
    types_ = registered()
    return BLOCK.sub(lambda m: render_block(m["type"]) if m["type"] in types_ else m[0], text)


def main(argv: list[str]) -> int:
    text = EVENTS_MD.read_text()
    if "--check" not in argv:
        text = regenerate(text)
        EVENTS_MD.write_text(text)
    found = problems(text)
    for problem in found:
        print(f"docs/events.md: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
