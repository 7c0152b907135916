"""Customer-facing words for the codes notices carry: the enums of backup.outcomes and the suspension reasons."""

from __future__ import annotations

from enum import StrEnum

from cloudbackup.backup.capacity import CapacityBasis
from cloudbackup.backup.outcomes import CollectionErrorReason, RunStatus, SkipReason
from cloudbackup.registry.customers import SuspensionReason

# Each group words every value of its enum in every language (a test checks it); `label` still falls back to
# the code itself rather than fail a notice.
GROUPS: dict[str, type[StrEnum]] = {
    "collection_error": CollectionErrorReason,
    "run_status": RunStatus,
    "skip": SkipReason,
    "suspension": SuspensionReason,
    "capacity_basis": CapacityBasis,           # the contract figure's name in a capacity notice
    "capacity_basis_detail": CapacityBasis,    # what that figure measures, in one sentence
}

LABELS: dict[str, dict[str, dict[str, str]]] = {
    "collection_error": {
        "ja": {
            "name_policy": "ファイル名が所定の形式ではないため収集対象外（約款第18条第2項）",
            "permission_denied": "アクセス権限がないため読み取れませんでした",
            "vanished": "収集中にファイルが削除・移動されました",
            "changed_during_read": "読み取り中にファイルが変更されたため、次回の収集で取得します",
            "unreadable": "読み取り中にエラーが発生しました",
            "special_file": "名前付きパイプ・ソケット・デバイスファイルのため収集対象外",
        },
        "en": {
            "name_policy": "file name not in the required format, not collected (terms art. 18(2))",
            "permission_denied": "permission denied",
            "vanished": "file deleted or moved during collection",
            "changed_during_read": "file changed while it was read; it is collected by the next run",
            "unreadable": "read error during collection",
            "special_file": "a named pipe, socket or device, not a regular file; not collected",
        },
    },
    "run_status": {
        "ja": {
            "running": "実行中",
            "succeeded": "正常終了",
            "succeeded_with_errors": "一部のファイルを収集できませんでした",
            "failed": "失敗（バックアップは作成されていません）",
            "skipped": "収集対象外",
        },
        "en": {
            "running": "running",
            "succeeded": "succeeded",
            "succeeded_with_errors": "some files were not collected",
            "failed": "failed (no backup was made)",
            "skipped": "not collected",
        },
    },
    "skip": {
        "ja": {
            "suspended": "サービスの利用停止中のため（約款第14条）",
            "maintenance": "メンテナンスによるサービス停止中のため（約款第13条）",
            "contract_ended": "ご契約のサービス提供期間が終了したため（約款第11条、第12条、第19条）",
            "cancelled_before_start": "サービス開始前にご契約が解約されたため（約款第21条第3項）",
        },
        "en": {
            "suspended": "the service is suspended (terms art. 14)",
            "maintenance": "the service is stopped for maintenance (terms art. 13)",
            "contract_ended": "the contract's service period has ended (terms art. 11, 12, 19)",
            "cancelled_before_start": "the contract was cancelled before the service started (terms art. 21(3))",
        },
    },
    "capacity_basis": {
        "ja": {
            "source_bytes": "バックアップ対象データ量",
            "stored_bytes": "保存容量",
        },
        "en": {
            "source_bytes": "Data backed up",
            "stored_bytes": "Stored volume",
        },
    },
    "capacity_basis_detail": {
        "ja": {
            "source_bytes": "最新のバックアップ時点で、お客様のサーバーの指定領域から収集したファイルの合計サイズです"
                            "（過去の世代として保存している分は含みません）。",
            "stored_bytes": "当社のバックアップ装置にお客様のために保存しているデータの合計です"
                            "（過去の世代を含みます）。",
        },
        "en": {
            "source_bytes": "the total size of the files collected from the designated areas of your server, as of "
                            "the latest backup (earlier versions we keep are not counted).",
            "stored_bytes": "everything we keep for you on our backup storage, earlier versions included.",
        },
    },
    "suspension": {
        "ja": {
            "non_payment": "ご利用料金のお支払いが確認できないこと",
            "terms_violation": "利用約款に違反する行為が確認されたこと",
            "unauthorized_access": "不正アクセスのおそれが確認されたこと",
            "other": "当社が必要と判断したこと",
        },
        "en": {
            "non_payment": "the service fees have not been paid",
            "terms_violation": "a breach of the terms of service was found",
            "unauthorized_access": "a risk of unauthorised access was found",
            "other": "the operator found it necessary",
        },
    },
}


def label(group: str, code: str, language: str) -> str:
    """The label, or the code itself for a code added after the labels (never an error in a notice)."""
    return LABELS[group][language].get(code, code)
