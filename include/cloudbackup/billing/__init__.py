"""Monthly billing: months, the fee rules of the terms and invoices (pure); invoices as records and CSV exports."""

from cloudbackup.billing.invoice import Invoice, InvoiceLine, LineKind, TaxSummary, tax_on
from cloudbackup.billing.months import BillingMonth
from cloudbackup.billing.rules import (
    bill,
    billed_months,
    explain,
    first_billed_month,
    initial_fee_month,
    last_billed_month,
    plan_code_for,
    price_for,
)

__all__ = ["BillingMonth", "Invoice", "InvoiceLine", "LineKind", "TaxSummary", "bill", "billed_months", "explain",
           "first_billed_month", "initial_fee_month", "last_billed_month", "plan_code_for", "price_for", "tax_on"]
