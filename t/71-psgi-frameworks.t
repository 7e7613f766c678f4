use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# Real frameworks from Debian, in their PSGI mode, served by PAGI::Server: a page, a
# form POST and a streamed response from a Dancer2 and a Mojolicious application
# (t/apps/*.psgi).

BEGIN { eval { require Plack::Util; 1 } or plan skip_all => 'Plack (libplack-perl) is not installed' }

my %FRAMEWORK = (dancer2 => 'Dancer2', mojolicious => 'Mojolicious');
for my $name (sort keys %FRAMEWORK) {
  subtest $FRAMEWORK{$name} => sub {
    plan skip_all => "$FRAMEWORK{$name} is not installed" unless eval "require $FRAMEWORK{$name}; 1";
    my $app = Plack::Util::load_psgi(ROOT . "/t/apps/$name.psgi");
    my $srv = start_server(psgi_app => $app);
    ok($srv->port, 'started') or return diag $srv->log;
    my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    is($r->[0]{status}, 200, 'GET /: 200');
    is($r->[0]{body}, "Hello from $FRAMEWORK{$name}", '... the page');
    my $form = 'name=Ann+Lee&x=%C3%A9';
    ($r) = http_exchange($srv->port, "POST /form HTTP/1.1\r\nHost: a\r\n"
      . "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " . length($form) . "\r\n\r\n$form");
    is($r->[0]{status}, 200, 'a form POST: 200');
    is($r->[0]{body}, 'Hi Ann Lee', '... its field read by the framework');
    ($r) = http_exchange($srv->port, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    is($r->[0]{status}, 200, 'a streamed response: 200');
    is($r->[0]{framing}, 'chunked', '... chunked by the server');
    is($r->[0]{body}, 'part 1;part 2;', '... its parts, once decoded (not chunked twice)');
    ($r) = http_exchange($srv->port, "GET /stream HTTP/1.0\r\n\r\n");
    is($r->[0]{body}, 'part 1;part 2;', '... and to an HTTP/1.0 client, close-delimited');
    is($srv->stop, 0, 'exit 0');
    unlike($srv->log, qr/\[error\]/, 'no error logged');
  };
}

done_testing;
