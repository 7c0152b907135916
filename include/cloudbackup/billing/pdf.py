"""The qualified invoice (適格請求書) as a PDF: one per issued invoice or credit note, Japanese or English.

Rendered with ReportLab from the document's archived data (`billing.archive.document_data`: the figures, the
issuer and the sales agent as they were at issue), never from the registry as it is now, so the PDF of an old
invoice stays what was issued. The IPA Gothic font is embedded (subset), so the PDF reads the same everywhere
and its text can be extracted (pdftotext). Output is deterministic: the same data gives the same bytes.
"""

from __future__ import annotations

import io
import os
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

FONT_NAME = "IPAGothic"
# Debian's fonts-ipafont-gothic (installed by `make setup`); CLOUDBACKUP_PDF_FONT points at another TrueType font.
DEFAULT_FONT = Path("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf")

rl_config.invariant = 1     # no creation time or random id in the file: the same data gives the same bytes

_T = {
    "ja": {"invoice": "請求書（適格請求書）", "credit_note": "請求書の取消（適格返還請求書ではありません）",
           "number": "請求書番号", "issue_date": "発行日", "period": "取引期間", "month_suffix": "分",
           "recipient_suffix": " 御中", "issuer": "発行者（適格請求書発行事業者）", "registration": "登録番号",
           "address": "所在地", "corrects": "取消・訂正の対象", "reason": "訂正の理由",
           "description": "内容", "rate": "税率区分", "amount": "金額（税抜）", "subtotal": "{label} 小計",
           "tax": "消費税（{percent}）", "total": "ご請求金額（税込）", "total_credit": "取消金額（税込）",
           "pay": "お支払い（約款第23条: お支払いは販売代理店へ）", "pay_to": "お支払先",
           "method": "お支払方法", "account": "お振込先", "due": "お支払期日", "contact": "お問い合わせ",
           "note": "消費税は税率ごとの合計額に対して計算し、1円未満の端数は切り捨てています（約款第25条・第26条）。",
           "out_of_scope": "不課税（消費税の対象外）", "no_payment": "お支払いは不要です。"},
    "en": {"invoice": "Qualified invoice", "credit_note": "Invoice cancellation (credit note)",
           "number": "Invoice number", "issue_date": "Issue date", "period": "Transaction period",
           "month_suffix": "", "recipient_suffix": "", "issuer": "Issuer (registered qualified invoice issuer)",
           "registration": "Registration number", "address": "Address", "corrects": "Cancels / corrects",
           "reason": "Reason for the correction", "description": "Description", "rate": "Tax rate",
           "amount": "Amount (before tax)", "subtotal": "Subtotal {label}", "tax": "Consumption tax ({percent})",
           "total": "Total due (tax included)", "total_credit": "Amount cancelled (tax included)",
           "pay": "Payment (terms art. 23: pay your sales agent)", "pay_to": "Pay to", "method": "Method",
           "account": "Account", "due": "Due date", "contact": "Contact",
           "note": "Consumption tax is computed once per tax rate on the subtotal; fractions of a yen are "
                   "truncated (terms art. 25, 26).",
           "out_of_scope": "outside the scope of consumption tax", "no_payment": "Nothing is to be paid."},
}


def font_path() -> Path:
    return Path(os.environ.get("CLOUDBACKUP_PDF_FONT", DEFAULT_FONT))


@cache
def _register_font(path: str) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"PDF font {path} not found: install Debian's fonts-ipafont-gothic (make setup) "
                                "or set CLOUDBACKUP_PDF_FONT to a TrueType font with Japanese glyphs")
    pdfmetrics.registerFont(TTFont(FONT_NAME, path))
    return FONT_NAME


def yen(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}¥{abs(amount):,}"


def long_date(value: str, language: str) -> str:
    d = date.fromisoformat(value)
    return f"{d.year}年{d.month}月{d.day}日" if language == "ja" else f"{d.day} {d:%B %Y}"


def month_label(value: str, language: str) -> str:
    year, number = (int(p) for p in value.split("-"))
    return f"{year}年{number}月" if language == "ja" else f"{date(year, number, 1):%B %Y}"


def percent(rate: str) -> str:
    return f"{(Decimal(rate) * 100).normalize():f}%"


def rate_label(rate: str, language: str) -> str:
    if Decimal(rate) == 0:
        return _T[language]["out_of_scope"]
    return f"{percent(rate)}対象" if language == "ja" else f"at {percent(rate)}"


def filename(data: dict[str, Any]) -> str:
    return f"{data['invoice_number']}.pdf"


def render(data: dict[str, Any], language: str = "ja") -> bytes:
    """The PDF of one archived document (see `billing.archive.document_data` for `data`)."""
    language = "en" if language == "en" else "ja"
    t = _T[language]
    font = _register_font(str(font_path()))
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=13)
    small = ParagraphStyle("small", parent=body, fontSize=7.5, leading=10, textColor=colors.HexColor("#444444"))
    title = ParagraphStyle("title", parent=body, fontSize=16, leading=22, spaceAfter=4)
    heading = ParagraphStyle("heading", parent=body, fontSize=10.5, leading=15, spaceBefore=6)

    def p(text: str, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"), style)

    en = language == "en"
    issuer, agent, recipient = data["issuer"], data["sales_agent"], data["recipient"]
    credit = data["document_type"] == "credit_note"
    month = month_label(data["billing_month"], language) + t["month_suffix"]
    period = f"{long_date(data['period_from'], language)} – {long_date(data['period_to'], language)}"
    story: list[Any] = [p(t["credit_note"] if credit else t["invoice"], title),
                        p(f"{recipient['name']}{t['recipient_suffix']}", heading), Spacer(1, 2 * mm)]
    head = [[t["number"], data["invoice_number"]],
            [t["issue_date"], long_date(data["issue_date"], language)],
            [t["period"], f"{month}（{period}）" if not en else f"{month} ({period})"]]
    if data.get("corrects_invoice_number"):
        head.append([t["corrects"], data["corrects_invoice_number"]])
    if data.get("reason"):
        head.append([t["reason"], data["reason"]])
    head += [[t["issuer"], (issuer.get("name_en") or issuer["name"]) if en else issuer["name"]],
             [t["registration"], issuer["registration_number"]]]
    address = (issuer.get("address_en") or issuer.get("address", "")) if en else issuer.get("address", "")
    if address:
        head.append([t["address"], address])
    story.append(_table([[p(k), p(v)] for k, v in head], [45 * mm, 125 * mm], grid=False))
    story.append(Spacer(1, 4 * mm))

    rows = [[p(t["description"]), p(t["rate"]), p(t["amount"])]]
    for line in data["lines"]:
        text = (line.get("description_en") or line["description"]) if en else line["description"]
        rows.append([p(text), p(rate_label(line["tax_rate"], language)), p(yen(line["amount"]))])
    for s in data["tax_summary"]:
        rows.append([p(t["subtotal"].format(label=rate_label(s["rate"], language))), "", p(yen(s["subtotal"]))])
        if Decimal(s["rate"]) != 0:
            rows.append([p(t["tax"].format(percent=percent(s["rate"]))), "", p(yen(s["tax"]))])
    rows.append([p(t["total_credit"] if credit else t["total"], heading), "", p(yen(data["total"]), heading)])
    story.append(_table(rows, [105 * mm, 35 * mm, 30 * mm], grid=True, right_col=2))
    story.append(Spacer(1, 2 * mm))
    story.append(p(t["note"], small))

    story.append(p(t["pay"], heading))
    pay = agent["payment"]
    pay_rows = [[t["pay_to"], (agent.get("name_en") or agent["name"]) if en else agent["name"]]]
    if credit:
        pay_rows.append([t["method"], t["no_payment"]])
    else:
        pay_rows.append([t["method"], (pay.get("method_en") or pay["method"]) if en else pay["method"]])
        account = (pay.get("account_en") or pay.get("account", "")) if en else pay.get("account", "")
        if account:
            pay_rows.append([t["account"], account])
        pay_rows.append([t["due"], long_date(data["payment_due_date"], language)])
    contact = agent.get("contact") or {}
    reach = " / ".join(x for x in (contact.get("email", ""), contact.get("phone", ""),
                                   (contact.get("hours_en") or contact.get("hours", "")) if en
                                   else contact.get("hours", "")) if x)
    if reach:
        pay_rows.append([t["contact"], reach])
    story.append(_table([[p(k), p(v)] for k, v in pay_rows], [45 * mm, 125 * mm], grid=False))

    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, initialFontName=font, author=issuer["name"], creator="cloudbackup",
                            title=f"{t['credit_note'] if credit else t['invoice']} {data['invoice_number']}")
    doc.build(story)
    return out.getvalue()


def _table(rows: list[list[Any]], widths: list[float], *, grid: bool, right_col: int | None = None) -> Table:
    table = Table(rows, colWidths=widths)
    style: list[tuple[Any, ...]] = [("FONTNAME", (0, 0), (-1, -1), FONT_NAME), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
    if grid:
        style += [("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#b0b7bf")),
                  ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f4"))]
    if right_col is not None:
        style.append(("ALIGN", (right_col, 1), (right_col, -1), "RIGHT"))
    table.setStyle(TableStyle(style))
    return table
