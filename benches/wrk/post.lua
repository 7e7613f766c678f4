-- POST with a 4 KiB body (benches/apps/echo-post.pl and raw_http.pl --echo answer
-- "4096\n"). wrk.format adds the Content-Length.
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
