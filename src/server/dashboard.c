/* The /dashboard page (being built). */
const char srv_dashboard_html[] = "<!doctype html><title>slm dashboard</title><p>being built</p>\n";
