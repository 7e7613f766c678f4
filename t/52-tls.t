use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use lib 't/lib';
use File::Temp ();
use PAGI::Test::Server qw(start_server http_exchange parse_response slurp);

# TLS (ssl_cert/ssl_key): scheme https and wss, the tls scope extension (only on TLS
# connections), client certificates, large bodies both ways, keep-alive, workers.
# Certificates are made at test time with the openssl command.

BEGIN {
  eval { require IO::Socket::SSL; 1 } or plan skip_all => 'IO::Socket::SSL is not installed';
  system('openssl version >/dev/null 2>&1') == 0 or plan skip_all => 'no openssl command';
}

my $dir = File::Temp->newdir;
sub ossl (@args) {
  system('openssl', @args) == 0 or die "openssl @args failed\n";
}
sub make_cert ($name, $subj, $ca = undef) {
  my ($key, $pem) = ("$dir/$name.key", "$dir/$name.pem");
  my @new = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', $key);
  if (!$ca) { ossl('req', '-x509', @new, '-out', $pem, '-days', 2, '-subj', $subj) }
  else {
    ossl('req', @new, '-out', "$dir/$name.csr", '-subj', $subj);
    ossl('x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/$ca.pem", '-CAkey', "$dir/$ca.key",
      '-CAcreateserial', '-out', $pem, '-days', 2);
  }
  return ($pem, $key);
}
open(my $olderr, '>&', \*STDERR);
open(STDERR, '>', '/dev/null');
my ($ca_pem)  = make_cert('ca', '/CN=PAGI Test CA');
my ($srv_pem, $srv_key) = make_cert('server', '/CN=localhost', 'ca');
my ($cli_pem, $cli_key) = make_cert('client', '/O=PAGI Test/CN=client one', 'ca');
my ($rogue_pem, $rogue_key) = make_cert('rogue', '/CN=rogue');
open(STDERR, '>&', $olderr);

my $BIG = join '', map { chr(($_ * 7) % 251) } 1 .. 1_500_000;

my $app = sub ($scope, $receive, $send) {
  if ($scope->{type} eq 'lifespan') { return Future->fail("no lifespan\n") }
  my %seen = (type => $scope->{type}, scheme => $scope->{scheme},
    has_tls => exists $scope->{extensions}{tls} ? 1 : 0, tls => $scope->{extensions}{tls},
    ext => [sort keys %{$scope->{extensions}}], client => $scope->{client}, pid => $$,
    live => do { no warnings 'once'; $PAGI::Server::Connection::LIVE });
  if ($scope->{type} eq 'websocket') {
    PAGI::Test::Server::report(%seen);
    return $receive->()->then(sub { $send->({type => 'websocket.accept'}) })
      ->then(sub { $send->({type => 'websocket.close'}) });
  }
  my $body = '';
  my $read;
  $read = sub {
    $receive->()->then(sub ($ev) {
      $body .= $ev->{body} // '';
      return $read->() if $ev->{more};
      undef $read;
      PAGI::Test::Server::report(%seen, path => $scope->{path}, got => length $body,
        ok => ($scope->{path} eq '/upload' ? ($body eq $BIG ? 1 : 0) : 1));
      my $out = $scope->{path} eq '/download' ? $BIG : "hello $scope->{path}\n";
      $send->({type => 'http.response.start', status => 200,
        headers => [['content-type', 'application/octet-stream'], ['x-pid', $$]]})
        ->then(sub { $send->({type => 'http.response.body', body => $out}) });
    });
  };
  return $read->();
};

# A blocking TLS client: sends $bytes, reads one response
sub tls_request ($port, $bytes, %ssl) {
  my $s = IO::Socket::SSL->new(PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 10,
    SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(), %ssl)
    or return (undef, "connect: " . IO::Socket::SSL::errstr());
  return tls_more($s, $bytes);
}
sub tls_more ($s, $bytes) {
  my $off = 0;
  while ($off < length $bytes) {
    my $n = syswrite($s, $bytes, 65536, $off) or return (undef, "write: $!", $s);
    $off += $n;
  }
  my $buf = '';
  while (1) {
    my ($r) = eval { parse_response($buf) };
    return ($r, undef, $s) if $r;
    my $n = sysread($s, $buf, 65536, length $buf);
    return (undef, 'closed: ' . ($n // $!) . ' after ' . length($buf) . ' bytes', $s) unless $n;
  }
}
my $GET = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";

my $srv = start_server(app => $app, ssl_cert => $srv_pem, ssl_key => $srv_key,
  ssl_ca => $ca_pem, ssl_verify_client => 'optional');
ok($srv->port, 'TLS server started');
like($srv->log, qr{listening on https://127\.0\.0\.1:\d+/}, 'it logs an https:// address');
my $server_pem = slurp($srv_pem) =~ s/\n?\z/\n/r;
my $nreports = 0;
sub last_report ($n = 1) {
  my @r = $srv->wait_reports($nreports + $n, 10);
  $nreports = @r;
  return $r[-1];
}

subtest 'TLS 1.3: scheme https and the tls extension' => sub {
  my ($r, $err) = tls_request($srv->port, $GET);
  ok($r, 'a response over TLS') or diag $err;
  is($r->{body}, "hello /x\n", 'the body');
  my $s = last_report();
  is($s->{scheme}, 'https', 'scheme https');
  ok($s->{has_tls}, 'the tls extension is present');
  my $t = $s->{tls};
  is($t->{tls_version}, 0x0304, 'tls_version 0x0304 (an integer)');
  like($t->{cipher_suite}, qr/\A[0-9]+\z/, 'cipher_suite is an integer');
  ok($t->{cipher_suite} >= 0x1301 && $t->{cipher_suite} <= 0x1305, sprintf 'a TLS 1.3 suite (0x%04x)', $t->{cipher_suite});
  is($t->{server_cert}, $server_pem, 'server_cert is the PEM of the certificate');
  is_deeply($t->{client_cert_chain}, [], 'client_cert_chain [] without a client certificate');
  is($t->{client_cert_name}, undef, 'client_cert_name undef');
  is($t->{client_cert_error}, undef, 'client_cert_error undef');
  is(ref $s->{client}, 'ARRAY', 'client address present');
};

subtest 'TLS 1.2: tls_version and cipher_suite' => sub {
  my ($r, $err) = tls_request($srv->port, $GET, SSL_version => 'TLSv1_2');
  ok($r, 'a response over TLS 1.2') or diag $err;
  my $t = last_report()->{tls};
  is($t->{tls_version}, 0x0303, 'tls_version 0x0303');
  is($t->{cipher_suite}, 0xC02C, 'cipher_suite 0xC02C (ECDHE-ECDSA-AES256-GCM-SHA384)')
    or diag sprintf '0x%04x', $t->{cipher_suite} // 0;
};

subtest "upstream's ssl => {cert_file, key_file, min_version, cipher_list}" => sub {
  my $s13 = start_server(app => $app, ssl => {cert_file => $srv_pem, key_file => $srv_key, min_version => 'TLSv1_3'});
  ok($s13->port, 'started with ssl => {...}') or return diag $s13->log;
  my ($r, $err) = tls_request($s13->port, $GET);
  is($r && $r->{body}, "hello /x\n", 'TLS 1.3 is served') or diag $err;
  ($r, $err) = tls_request($s13->port, $GET, SSL_version => 'TLSv1_2');
  ok(!$r, 'min_version TLSv1_3: a TLS 1.2 client is refused');
  is($s13->stop, 0, 'exit 0');
  my $s12 = start_server(app => $app, ssl => {cert_file => $srv_pem, key_file => $srv_key,
    cipher_list => 'ECDHE-ECDSA-AES128-GCM-SHA256'});
  ($r, $err) = tls_request($s12->port, $GET, SSL_version => 'TLSv1_2');
  ok($r, 'cipher_list: TLS 1.2 served') or diag $err;
  my @rep = $s12->wait_reports(1, 10);
  is($rep[-1]{tls}{cipher_suite}, 0xC02B, '... with the one cipher allowed (0xC02B)');
  is($s12->stop, 0, 'exit 0');
  ok(!eval { PAGI::Server->new(app => $app, ssl => {cert_file => $srv_pem, key_file => $srv_key,
    min_version => 'TLSv9'}); 1 }, 'an unknown min_version croaks');
};

subtest 'client certificates' => sub {
  my ($r, $err) = tls_request($srv->port, $GET, SSL_cert_file => $cli_pem, SSL_key_file => $cli_key);
  ok($r, 'a response with a client certificate') or diag $err;
  my $t = last_report()->{tls};
  is(scalar @{$t->{client_cert_chain}}, 1, 'the chain has the leaf');
  is($t->{client_cert_chain}[0], slurp($cli_pem) =~ s/\n?\z/\n/r, 'as PEM');
  is($t->{client_cert_name}, 'CN=client one,O=PAGI Test', 'client_cert_name in RFC 4514 order');
  is($t->{client_cert_error}, undef, 'verified: client_cert_error undef');
  ($r, $err) = tls_request($srv->port, $GET, SSL_cert_file => $rogue_pem, SSL_key_file => $rogue_key);
  ok($r, 'optional verification: an unverifiable certificate is still served') or diag $err;
  $t = last_report()->{tls};
  is($t->{client_cert_name}, 'CN=rogue', 'its name');
  ok(defined $t->{client_cert_error} && length $t->{client_cert_error}, "client_cert_error: $t->{client_cert_error}");
};

subtest 'large bodies both ways, keep-alive' => sub {
  my $up = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($BIG) . "\r\n\r\n$BIG";
  my ($r, $err, $s) = tls_request($srv->port, $up);
  ok($r && $r->{status} == 200, '1.5 MB upload answered') or diag $err;
  ok(last_report()->{ok}, 'the app received it intact');
  ($r, $err) = tls_more($s, "GET /download HTTP/1.1\r\nHost: x\r\n\r\n");
  ok($r, 'download on the same connection') or diag $err;
  ok($r && $r->{body} eq $BIG, '1.5 MB response intact');
  last_report();
  ($r, $err) = tls_more($s, $GET);
  is($r && $r->{body}, "hello /x\n", 'a third request on the connection');
  last_report();
};

subtest 'WebSocket over TLS: scheme wss, tls present' => sub {
  my $hs = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  my ($r, $err) = tls_request($srv->port, $hs);
  is($r && $r->{status}, 101, '101 Switching Protocols over TLS') or diag $err;
  my $s = last_report();
  is($s->{scheme}, 'wss', 'scheme wss');
  ok($s->{has_tls}, 'tls extension present');
  ok((grep { $_ eq 'websocket.http.response' } @{$s->{ext}}), 'next to websocket.http.response');
};

subtest 'plain HTTP to the TLS port fails cleanly; TLS still works' => sub {
  my ($res, $c) = http_exchange($srv->port, $GET, timeout => 3);
  ok(!@$res, 'no HTTP response to plaintext');
  ok($c->wait_closed(5), 'the connection is closed');
  my ($r, $err) = tls_request($srv->port, $GET);
  ok($r, 'TLS clients are still served') or diag $err;
  last_report();
};

subtest 'every TLS connection above was freed' => sub {
  # Only the asking connection is alive once the server has seen the others close
  my $live;
  PAGI::Test::Server::wait_for(sub {
    my ($r, $err) = tls_request($srv->port, "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    $live = $r ? last_report()->{live} : "no answer: $err";
    $live eq '1';
  }, 5);
  is($live, 1, 'one connection object alive: the one asking');
};

is($srv->stop, 0, 'TLS server exits 0');
unlike($srv->log, qr/\[error\]/, 'no error logged');

subtest 'a plain server: no tls extension' => sub {
  my $plain = start_server(app => $app);
  my ($res) = http_exchange($plain->port, $GET);
  is($res->[0]{status}, 200, 'served');
  my ($s) = $plain->wait_reports(1, 5);
  is($s->{scheme}, 'http', 'scheme http');
  ok(!$s->{has_tls}, 'no tls key in extensions');
  is($plain->stop, 0, 'exits 0');
};

subtest 'TLS with two workers' => sub {
  my $w = start_server(app => $app, ssl_cert => $srv_pem, ssl_key => $srv_key, workers => 2);
  my %pids;
  for (1 .. 12) {
    my ($r, $err) = tls_request($w->port, "GET /w HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    $r ? $pids{$r->{h}{'x-pid'}}++ : diag $err;
  }
  is(eval { my $n = 0; $n += $_ for values %pids; $n }, 12, 'twelve TLS requests answered');
  my @s = $w->wait_reports(12, 5);
  ok(!grep({ $_->{scheme} ne 'https' || !$_->{has_tls} } @s), 'all https with tls');
  is($w->stop, 0, 'exits 0');
};

done_testing;
