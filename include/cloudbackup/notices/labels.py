"""Customer-facing words for the codes notices carry (collection error reasons, suspension reasons)."""

from __future__ import annotations

LABELS: dict[str, dict[str, dict[str, str]]] = {
    "collection_error": {
        "ja": {
            "name_policy": "ファイル名が所定の形式ではないため収集対象外（約款第18条第2項）",
            "permission_denied": "アクセス権限がないため読み取れませんでした",
            "vanished": "収集中にファイルが削除・移動されました",
            "not_a_regular_file": "通常のファイルではないため収集対象外",
            "read_error": "読み取り中にエラーが発生しました",
            "too_large": "容量の上限を超えるため収集できませんでした",
        },
        "en": {
            "name_policy": "file name not in the required format, not collected (terms art. 18(2))",
            "permission_denied": "permission denied",
            "vanished": "file deleted or moved during collection",
            "not_a_regular_file": "not a regular file, not collected",
            "read_error": "read error during collection",
            "too_large": "over the capacity limit, not collected",
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
