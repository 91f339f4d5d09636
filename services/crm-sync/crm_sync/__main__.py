from crm_sync.app import SERVICE
from leadpact.service import serve

serve(SERVICE)
