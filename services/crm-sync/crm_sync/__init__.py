"""leadpact crm-sync: the golden customer record shared by marketing, sales and billing."""
