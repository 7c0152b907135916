-- Finance: the invoices of one billing month with their totals. Params: month (YYYY-MM).
SELECT invoice_number, customer_id, billing_month, sales_agent, subtotal, tax, total, issued_at
FROM invoices
WHERE billing_month = :month AND state = 'issued'
ORDER BY invoice_number
