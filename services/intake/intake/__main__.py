from leadpact.service import serve

from intake.app import SERVICE

serve(SERVICE)
