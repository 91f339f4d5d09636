from feedback.app import SERVICE
from leadpact.service import serve

serve(SERVICE)
