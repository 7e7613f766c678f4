# hello as a PSGI application: the same bytes as apps/hello.pl and raw_http.pl
# ("Hello, World!\n", text/plain; the server adds Content-Length, as for hello.pl)
my $body = ["Hello, World!\n"];
my $headers = ['Content-Type' => 'text/plain'];
sub { [200, $headers, $body] };
