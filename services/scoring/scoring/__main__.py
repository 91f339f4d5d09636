from leadpact.service import serve
from scoring.app import SERVICE

serve(SERVICE)
