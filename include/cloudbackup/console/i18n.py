"""The console's two languages: which one a request gets, and the Japanese of every English label (pure).

Airflow's UI keeps the user's language in the browser (i18next, localStorage `i18nextLng`); the console's
pages copy it into the cookie `cloudbackup_ui_lang` (a line of script in base.html.j2), so the server follows
Airflow's language. A toggle on every page (`?lang=ja|en`) sets `cloudbackup_lang`, which wins over it;
without either, the browser's Accept-Language decides, then English.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

LANGUAGES = ("ja", "en")
TOGGLE_COOKIE = "cloudbackup_lang"       # set by the toggle on the page
UI_COOKIE = "cloudbackup_ui_lang"        # Airflow UI's language, copied by the page's script


def _language(value: str | None) -> str | None:
    code = (value or "").strip().lower()[:2]
    return code if code in LANGUAGES else None


def pick_language(query: str | None, cookies: Mapping[str, str], accept_language: str | None) -> str:
    """?lang= first, then the console's toggle cookie, then Airflow UI's language, then Accept-Language."""
    for candidate in (query, cookies.get(TOGGLE_COOKIE), cookies.get(UI_COOKIE)):
        if code := _language(candidate):
            return code
    weighted = []
    for n, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        if (code := _language(tag)) and weight > 0:
            weighted.append((-weight, n, code))
    return min(weighted)[2] if weighted else "en"


def translator(lang: str) -> Callable[..., str]:
    """`_("Fleet")` → 「フリート」 in Japanese; `{name}` fields are filled from keyword arguments."""
    table = JA if lang == "ja" else EN

    def _(label: str, /, **fields: object) -> str:
        out = table.get(label, label)
        return out.format(**fields) if fields else out
    return _


# Every label of the console's templates and reasons; tests/test_console.py checks that none is missing.
JA: dict[str, str] = {
    # navigation and shared
    "Fleet": "バックアップ一覧",
    "Finance": "経理",
    "Reports": "レポート",
    "Airflow DAGs": "Airflow の DAG",
    "cloudbackup console": "cloudbackup コンソール",
    "Language": "言語",
    "Sign in": "サインイン",
    "Not allowed": "権限がありません",
    "Your Airflow role does not allow this page.": "お使いの Airflow のロールでは、このページは表示できません。",
    "Needed: {what}.": "必要な権限: {what}。",
    "the finance role (Airflow role user, op or admin)": "経理のロール（Airflow のロール user、op または admin）",
    "the operator role (Airflow role op or admin)": "運用担当のロール（Airflow のロール op または admin）",
    "read access to this customer's DAG": "この顧客の DAG の閲覧権限",
    "Back to the fleet": "バックアップ一覧に戻る",
    # statuses and states
    "succeeded": "成功",
    "succeeded with errors": "一部エラーあり",
    "failed": "失敗",
    "running": "実行中",
    "skipped": "スキップ",
    "never": "未実行",
    "active": "稼働中",
    "maintenance": "メンテナンス中",
    "suspended": "停止中",
    "broken": "設定エラー",
    "pending": "送信待ち",
    "stuck": "送信不能",
    "sent": "送信済み",
    "queued": "待機中",
    "success": "成功",
    # fleet
    "{shown} of {total} customers": "{total} 件中 {shown} 件",
    "Needs attention": "要対応",
    "all": "すべて",
    "Customer": "顧客",
    "Last run": "前回の実行",
    "Collection errors": "収集エラー",
    "Counted / contract": "契約対象量 / 契約容量",
    "Next run": "次回の実行",
    "Notices": "通知",
    "State": "状態",
    "DAG": "DAG",
    "Reasons": "理由",
    "customer id or name": "顧客 ID または名前",
    "Filter by customer": "顧客で絞り込み",
    "Contract state": "契約状態",
    "Last run status": "前回の実行結果",
    "any state": "すべての状態",
    "any last run": "すべての実行結果",
    "any reason": "すべての理由",
    "needs attention": "要対応のみ",
    "Filter": "絞り込む",
    "No customer matches.": "該当する顧客はいません。",
    "never run": "未実行",
    "{n} files": "{n} ファイル",
    "{n} stuck": "{n} 件送信不能",
    "{n} pending": "{n} 件送信待ち",
    "not sent after the last allowed attempt": "最後の再試行でも送信できませんでした",
    "not measured yet": "容量の記録なし",
    # the contract figure (art. 6, 17(3)) and the operator's stored bytes, never confused
    "basis:source_bytes": "最新スナップショット時点のデータ量",
    "basis:stored_bytes": "S3 保存量（履歴を含む）",
    "basis:None": "",
    "stored in S3 (operator): {size}": "S3 保存量（運用者の値）: {size}",
    "paused in Airflow": "Airflow で一時停止中",
    "previous page": "前のページ",
    "next page": "次のページ",
    "rows {first}–{last}": "{first}–{last} 件目",
    "sorted ascending": "昇順",
    "sorted descending": "降順",
    # attention flags: names and reasons
    "flag:broken": "設定ファイルの誤り",
    "flag:paused": "DAG 一時停止中",
    "flag:overdue": "予定の実行なし",
    "flag:never_run": "一度も実行なし",
    "flag:long_running": "実行が長すぎる",
    "flag:failed": "前回失敗",
    "flag:with_errors": "収集エラーあり",
    "flag:stuck_notices": "通知の送信不能",
    "flag:near_capacity": "容量上限に接近",
    "reason:broken": "顧客ファイルを読み込めません: {text}",
    "reason:paused": "DAG が Airflow で一時停止されています。バックアップは実行されません",
    "reason:overdue": "{at} の予定の実行がありません",
    "reason:never_run": "予定（{at}）を過ぎても一度も実行されていません",
    "reason:long_running": "{at} から {number:.0f} 分実行中（通常より長い、またはタイムアウト超過）",
    "reason:failed": "前回の実行が失敗しました",
    "reason:with_errors": "前回の実行で収集できないファイルがありました",
    "reason:stuck_notices": "{number:.0f} 件の通知が送信できていません",
    "reason:near_capacity": "契約容量の {number}% を使用しています",
    # customer page
    "Plan": "プラン",
    "{size} contract capacity": "契約容量 {size}",
    "Counted against the contract": "契約容量の対象量",
    "counted against the contract": "契約容量の対象量",
    "stored in S3 (operator's figure)": "S3 保存量（運用者の値）",
    "Counted": "契約対象量",
    "Stored in S3": "S3 保存量",
    "Airflow": "Airflow",
    "cron {cron} Asia/Tokyo": "cron {cron}（日本時間）",
    "Capacity over time": "容量の推移",
    "The contract figure over the last year against the contract capacity, and the bytes stored in S3":
        "過去 1 年の契約容量の対象量と契約容量、S3 保存量",
    "contract {size}": "契約 {size}",
    "No capacity figure recorded in the last year.": "過去 1 年の容量の記録はありません。",
    "Capacity notices:": "容量のお知らせ:",
    "{percent}% on {at}": "{at} に {percent}%",
    "Open collection errors": "未解決の収集エラー",
    "from run {run}": "実行 {run} より",
    "Path": "パス",
    "Reason": "理由",
    "Detail": "詳細",
    "Recorded": "記録日時",
    "Showing the first {n}.": "最初の {n} 件を表示しています。",
    "None: the latest run collected every file.": "ありません。前回の実行ですべてのファイルを収集しました。",
    "Recent runs": "最近の実行",
    "Started": "開始",
    "Status": "結果",
    "Files": "ファイル数",
    "Collected": "収集量",
    "Run": "実行",
    "No runs yet.": "まだ実行されていません。",
    "Snapshots available for restore": "復元できるスナップショット",
    "Taken": "取得日時",
    "Snapshot": "スナップショット",
    "Size": "サイズ",
    "No snapshot yet.": "スナップショットはまだありません。",
    "Browse and restore": "参照して復元",
    "Browse": "参照",
    "Queued": "登録日時",
    "Kind": "種類",
    "Subject": "件名",
    "Last error": "最後のエラー",
    "{n} attempts": "{n} 回試行",
    "No notices.": "通知はありません。",
    # restore
    "Restore": "復元",
    "Restore from snapshot {snapshot}": "スナップショット {snapshot} から復元",
    "Folder": "フォルダ",
    "Name": "名前",
    "Modified": "更新日時",
    "folder": "フォルダ",
    "file": "ファイル",
    "link": "リンク",
    "{n} files, {size}": "{n} ファイル、{size}",
    "Empty folder.": "空のフォルダです。",
    "Restore this": "これを復元",
    "Restore the whole folder": "このフォルダ全体を復元",
    "Selected": "選択中",
    "Target": "復元先",
    "Start the restore": "復元を開始",
    "to the customer's server, in {folder} (beside the live data, never over it)":
        "顧客のサーバーの {folder} へ（現行データの横に。上書きはしません）",
    "to the worker's restore folder {folder}": "ワーカーの復元フォルダ {folder} へ",
    "Only operators (Airflow role op or admin) may start a restore.":
        "復元を開始できるのは運用担当（Airflow のロール op または admin）だけです。",
    "Every restored file is checked against the snapshot's manifest.":
        "復元したファイルはすべてスナップショットのマニフェストと照合されます。",
    "Restore run": "復元の実行",
    "Restore run {run}": "復元の実行 {run}",
    "Open the run in Airflow": "Airflow で実行を開く",
    "This page refreshes every 5 s until the run ends.": "実行が終わるまで 5 秒ごとに更新します。",
    "Parameters": "パラメーター",
    "No manifest for this snapshot.": "このスナップショットのマニフェストがありません。",
    # finance and invoices
    "issued invoices by billing month (Asia/Tokyo calendar)": "請求月ごとの発行済み請求書（日本時間の暦月）",
    "Billing month": "請求月",
    "Documents": "書類数",
    "Subtotal": "小計",
    "Tax": "消費税",
    "Total": "合計",
    "Month-end CSV files": "月末 CSV ファイル",
    "No invoices issued yet.": "発行済みの請求書はまだありません。",
    "Invoices of {month}": "{month} の請求書",
    "Invoice": "請求書",
    "Sales agent": "販売代理店",
    "Issued": "発行日",
    "draft": "下書き",
    "finance-csv-note": "請求 DAG が書き出すものと同じ月末ファイルを、ダウンロードのたびにデータベースから作成します。"
                        "<code>invoices-YYYY-MM.csv</code> は発行した請求書・取消書類 1 件につき 1 行、"
                        "<code>invoice-lines-YYYY-MM.csv</code> は明細 1 行につき 1 行です。"
                        "日本語版 Excel で開けるよう BOM 付き UTF-8 です。",
    "Invoice {number}": "請求書 {number}",
    "Lines": "明細",
    "Description": "内容",
    "Tax rate": "税率",
    "Amount": "金額",
    "Consumption tax": "消費税",
    # the invoice archive
    "Invoice archive": "請求書の保存（電子帳簿保存法）",
    "issued invoices and credit notes, kept as issued for 7 years (電子帳簿保存法)":
        "発行した請求書・取消書類を発行時のまま 7 年間保存しています",
    "Issued from": "発行日（から）",
    "to": "まで",
    "Total from (yen)": "合計金額（円、から）",
    "Counterparty": "取引先",
    "customer id or part of the name": "顧客 ID または名称の一部",
    "Search": "検索",
    "{count} document(s)": "{count} 件",
    "showing the first {limit}; narrow the search": "先頭の {limit} 件を表示しています。条件を絞ってください",
    "Document": "書類",
    "Issued by": "発行者",
    "Kept until": "保存期限",
    "corrects {number}": "{number} の訂正",
    "No archived document matches.": "条件に合う保存書類はありません。",
    "archive-note": "日付・金額は範囲で、取引先と組み合わせて検索できます。保存書類は変更できず、"
                    "訂正は元の書類にひも付く新しい書類になります"
                    "（cloudbackup billing archive search でも検索できます）。",
    "Search the invoice archive": "保存書類を検索",
    # reports
    "the SQL reports of {folder}, as CSV (also {command})":
        "{folder} の SQL レポート（CSV。{command} でも実行できます）",
    "Report": "レポート",
    "For": "対象",
    "What it is": "内容",
    "Download": "ダウンロード",
    "finance role needed": "経理のロールが必要です",
    "ops": "運用",
    "finance": "経理",
}


# The English of the labels that are keys rather than text (flag names, reasons, notes with markup).
EN: dict[str, str] = {
    "basis:source_bytes": "data as of the latest snapshot",
    "basis:stored_bytes": "bytes stored in S3 (history included)",
    "basis:None": "",
    "flag:broken": "Broken registry file",
    "flag:paused": "DAG paused",
    "flag:overdue": "Overdue",
    "flag:never_run": "Never run",
    "flag:long_running": "Running too long",
    "flag:failed": "Last run failed",
    "flag:with_errors": "Collection errors",
    "flag:stuck_notices": "Stuck notices",
    "flag:near_capacity": "Near capacity",
    "reason:broken": "its customer file does not load: {text}",
    "reason:paused": "its DAG is paused in Airflow: no backup runs",
    "reason:overdue": "no run for the slot of {at}",
    "reason:never_run": "never ran, though a run was due at {at}",
    "reason:long_running": "running for {number:.0f} min since {at} (longer than usual, or past the run timeout)",
    "reason:failed": "the last run failed",
    "reason:with_errors": "the last run could not collect some files",
    "reason:stuck_notices": "{number:.0f} notice(s) could not be sent",
    "reason:near_capacity": "{number}% of the contract capacity in use",
    "archive-note": "Dates and amounts search as ranges, combined with the counterparty. Archived documents "
                    "cannot be changed; a correction is a new document linked to the one it corrects (also "
                    "`cloudbackup billing archive search`).",
    "finance-csv-note": "Month-end files as the billing DAG writes them, generated from the database on each "
                        "download: <code>invoices-YYYY-MM.csv</code> has one row per issued invoice or credit note, "
                        "<code>invoice-lines-YYYY-MM.csv</code> one row per line. UTF-8 with BOM, so Japanese Excel "
                        "opens them.",
}
