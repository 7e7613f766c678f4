use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use lib 't/lib';
use PAGI::Test::Server qw(ROOT);

# Modules load, the codec backend is chosen as documented, and PAGI::Server->new
# validates its options. XS-specific checks live in t/30-* and t/31-*.

use_ok($_) for qw(PAGI::Server PAGI::Server::Handoff PAGI::Server::Connection PAGI::Server::Connection::Fields PAGI::Server::ConnectionState
  PAGI::Server::Connection::Request PAGI::Server::Connection::Response PAGI::Server::Record
  PAGI::Server::Protocol::HTTP1 PAGI::Server::Protocol::HTTP1::PP);

# Records: named index constants, declared once per record
{
  package T::Record;
  use PAGI::Server::Record qw(alpha beta);
}
is_deeply([T::Record::ALPHA(), T::Record::BETA()], [0, 1], 'a record\'s fields are its index constants');
is_deeply(\@T::Record::FIELDS, [qw(alpha beta)], '... and @FIELDS names them in order');
ok(!eval "package T::Twice; use PAGI::Server::Record qw(one two one); 1", 'a field declared twice');
like($@, qr/field 'ONE' declared twice in T::Twice/, '... is a compile-time error');
{
  my $rq = PAGI::Server::Connection::Request::start({}, [], 'cstate', 4);
  is(scalar @$rq, PAGI::Server::Connection::Request::BODY_FINAL() + 1,
    'a new request record has room for what a plain request sets (up to body_final)');
  is_deeply([@$rq[0 .. 3]], [{}, [], 'cstate', 4], '... its first four from start()');
  is_deeply([@$rq[PAGI::Server::Connection::Request::APP_RUNNING(), PAGI::Server::Connection::Request::BODY_OPEN(),
    PAGI::Server::Connection::Request::BODY_BUF(), PAGI::Server::Connection::Request::STARTED()]], [1, undef, undef, undef],
    '... the rest at their start values (most unset)');
}

my $impl = do { no warnings 'once'; $PAGI::Server::Protocol::HTTP1::IMPLEMENTATION };
like($impl, qr/\A(?:XS|PP)\z/, "an implementation is selected (\$IMPLEMENTATION is $impl)");
is(PAGI::Server->backend, $impl, 'PAGI::Server->backend names it');
is(PAGI::Server::Protocol::HTTP1::backend(), $impl, 'the facade names it too');
my $env = lc($ENV{PAGI_SERVER_BACKEND} // '');
is($impl, 'PP', 'PAGI_SERVER_BACKEND=pp in this environment gives PP') if $env eq 'pp';
is($impl, 'XS', 'PAGI_SERVER_BACKEND=xs in this environment gives XS') if $env eq 'xs';
# After `make` in this checkout, `prove -l t/` must run on the Rust backend
my ($built) = glob 'blib/arch/auto/PAGI/Server/Protocol/HTTP1/XS/XS.*';
is($impl, 'XS', "the XS object is built ($built): without PAGI_SERVER_BACKEND=pp, XS is active")
  if $built && $env ne 'pp';

# The facade's functions are the implementation's own (aliased, not wrapped)
for my $f (@PAGI::Server::Protocol::HTTP1::FUNCTIONS) {
  my $facade = PAGI::Server::Protocol::HTTP1->can($f);
  ok($facade, "facade has $f");
  is($facade, "PAGI::Server::Protocol::HTTP1::$impl"->can($f), "facade $f is ${impl}::$f itself");
}
is_deeply([sort @PAGI::Server::Protocol::HTTP1::FUNCTIONS],
  [sort qw(parse_request decode_chunked serialize_response check_headers serialize_chunk serialize_trailers
    connection_info accept_socket set_server_header)], 'the facade exports the documented functions');

# The WebSocket facade: the same one choice, its functions aliased the same way
require PAGI::Server::Protocol::WebSocket;
my ($ws_impl, @ws_functions) = do {
  no warnings 'once';
  ($PAGI::Server::Protocol::WebSocket::IMPLEMENTATION, @PAGI::Server::Protocol::WebSocket::FUNCTIONS);
};
is($ws_impl, $impl, 'the WebSocket codec has the same backend');
for my $f (@ws_functions) {
  is(PAGI::Server::Protocol::WebSocket->can($f), "PAGI::Server::Protocol::WebSocket::$impl"->can($f),
    "WebSocket facade $f is ${impl}::$f itself");
}

# The HTTP/2 facade: the same one choice; new_session is the backend's own, and its
# sessions have every method of the contract
require PAGI::Server::Protocol::HTTP2;
{
  no warnings 'once';
  is($PAGI::Server::Protocol::HTTP2::IMPLEMENTATION, $impl, 'the HTTP/2 codec has the same backend');
  for my $f (@PAGI::Server::Protocol::HTTP2::FUNCTIONS) {
    is(PAGI::Server::Protocol::HTTP2->can($f), "PAGI::Server::Protocol::HTTP2::$impl"->can($f),
      "HTTP/2 facade $f is ${impl}::$f itself");
  }
  is($PAGI::Server::Protocol::HTTP2::SESSION_CLASS, "PAGI::Server::Protocol::HTTP2::${impl}::Session", 'its session class');
  ok("PAGI::Server::Protocol::HTTP2::${impl}::Session"->can($_), "... can $_") for @PAGI::Server::Protocol::HTTP2::METHODS;
  is_deeply([sort @PAGI::Server::Protocol::HTTP2::METHODS], [sort qw(feed events error output respond send_data
    send_trailers buffered consumed reset goaway want_write is_closed open_streams last_stream_id)],
    'the session methods are the documented ones');
}

# Selection, in fresh perls (the choice is made once, at load time)
sub perl_backend ($env, $code = 'use PAGI::Server; print PAGI::Server->backend') {
  local %ENV = %ENV;
  delete $ENV{PAGI_SERVER_BACKEND};
  $ENV{$_} = $env->{$_} for keys %$env;
  my $pid = open(my $fh, '-|') // die "fork: $!";
  if (!$pid) {
    open(STDERR, '>&', \*STDOUT);
    exec($^X, '-I' . ROOT . '/lib', '-e', $code) or exit 127;
  }
  local $/;
  my $out = <$fh>;
  close $fh;
  return ($out // '', $? >> 8);
}

my ($out, $rc) = perl_backend({PAGI_SERVER_BACKEND => 'pp'});
is($out, 'PP', 'PAGI_SERVER_BACKEND=pp forces PP');
is($rc, 0, '... and exits 0');
($out, $rc) = perl_backend({PAGI_SERVER_BACKEND => 'PP'});
is($out, 'PP', 'the value is case-insensitive (PP)');
($out) = perl_backend({PAGI_SERVER_BACKEND => 'auto'});
like($out, qr/\A(?:XS|PP)\z/, "auto picks one ($out)");
($out) = perl_backend({});
like($out, qr/\A(?:XS|PP)\z/, "unset picks one ($out)");
($out, $rc) = perl_backend({PAGI_SERVER_BACKEND => 'turbo'});
isnt($rc, 0, 'an unknown PAGI_SERVER_BACKEND value makes loading fail');
like($out, qr/PAGI_SERVER_BACKEND must be 'xs', 'pp' or 'auto', not 'turbo'/,
  '... with a message naming the variable and the bad value');
# A backend loaded before its facade (it loads the facade for its constants): the facade
# still installs it, its functions defined once its compilation ends
($out) = perl_backend({PAGI_SERVER_BACKEND => 'pp'}, 'use PAGI::Server::Protocol::HTTP1::PP;'
  . ' my ($r) = PAGI::Server::Protocol::HTTP1::parse_request("GET /x HTTP/1.0\r\n\r\n", 100, 10, 100);'
  . ' print "$PAGI::Server::Protocol::HTTP1::IMPLEMENTATION $r->{path} ",'
  . ' \&PAGI::Server::Protocol::HTTP1::parse_request == \&PAGI::Server::Protocol::HTTP1::PP::parse_request ? 1 : 0');
is($out, 'PP /x 1', 'the PP backend loaded first, with PP forced: the facade aliases it');
($out) = perl_backend({}, 'BEGIN { $PAGI::Server::BACKEND = "pp" } use PAGI::Server; print PAGI::Server->backend');
is($out, 'PP', '$PAGI::Server::BACKEND = "pp" set before loading forces PP');
($out) = perl_backend({PAGI_SERVER_BACKEND => 'pp'},
  'BEGIN { $PAGI::Server::BACKEND = "xs" } use PAGI::Server; print PAGI::Server->backend');
is($out, 'PP', 'the environment wins over $PAGI::Server::BACKEND');

# new: option validation (the runner contract's options are accepted)
my $app = sub { Future->done };
for my $case (
  [[app => $app, host => '127.0.0.1', port => 0, quiet => 1, access_log => undef, loop_type => 'Select'],
    undef, 'the runner contract options are accepted'],
  [[app => $app, bogus => 1, other => 2], qr/unknown option\(s\): bogus other/, 'unknown options are named'],
  [[], qr/app must be a code reference/, 'a missing app croaks'],
  [[app => 'app.pl'], qr/app must be a code reference/, 'a non-code app croaks'],
  [[app => $app, port => 'http'], qr/port must be a non-negative number, not 'http'/, 'a non-numeric port croaks'],
  [[app => $app, timeout => -1], qr/timeout must be a non-negative number/, 'a negative timeout croaks'],
  [[app => $app, max_body_size => undef], qr/max_body_size must be a non-negative number/, 'an undef limit croaks'],
  [[app => $app, log_level => 'loud'], qr/log_level must be one of/, 'an unknown log_level croaks'],
  [[app => $app, on_listen => 1], qr/on_listen must be a code reference/, 'a non-code on_listen croaks'],
  [[app => $app, backend => lc $impl], undef, 'backend naming the loaded implementation is accepted'],
  [[app => $app, backend => 'auto'], undef, 'backend => auto is accepted'],
  [[app => $app, backend => ($impl eq 'PP' ? 'xs' : 'pp')], qr/requested but $impl is loaded/,
    'backend naming the other implementation croaks'],
) {
  my ($args, $err, $name) = @$case;
  my $s = eval { PAGI::Server->new(@$args) };
  if ($err) { like($@, $err, $name); ok(!$s, '... and returns nothing') }
  else      { isa_ok($s, 'PAGI::Server', $name) or diag $@ }
}

# What a server logs at a level (its log lines go to stderr)
sub logged ($server, @levels) {
  my $out = '';
  open(my $fh, '>', \$out) or die $!;
  local *STDERR = $fh;
  $server->log($_ => "at $_") for @levels;
  return [$out =~ /\] at (\w+)$/mg];
}
my $s = PAGI::Server->new(app => $app, quiet => 1);
is_deeply(logged($s, qw(error warn info)), ['error'], 'quiet: errors only (as upstream)');
is($s->port, 5000, 'port defaults to 5000 before listening');
is_deeply(logged(PAGI::Server->new(app => $app, quiet => 1, log_level => 'debug'), qw(error warn info debug)),
  ['error'], 'quiet wins over a higher log_level');
is_deeply(logged(PAGI::Server->new(app => $app, log_level => 'warn'), qw(error warn info)),
  ['error', 'warn'], 'log_level warn: errors and warnings');

# The shared done Future a send returns: awaiting it gives nothing at once, and what
# Future's methods build from it are plain Futures that are awaited as such
{
  no warnings 'once';
  my $done = $PAGI::Server::Future::DONE;
  is($PAGI::Server::Connection::DONE, $done, 'the connection returns that one');
  ok($done->isa('Future') && $done->is_done, 'the shared done Future is a done Future');
  my $count = (async sub { my @got = await $done; scalar @got })->()->get;
  is($count, 0, 'awaiting it gives no values');
  my $pending = $done->followed_by(sub { Future->new });
  is(ref $pending, 'Future', 'a Future built from it is a plain Future');
  my $waiter = (async sub { await $pending; 'resumed' })->();
  ok($waiter && !$waiter->is_ready, '... awaited as pending while it is');
  $pending->done;
  is($waiter->get, 'resumed', '... and resumed when it is done');
  is($done->then(sub { Future->done(7) })->get, 7, '->then on it runs its code');
  # Future's convergents build from their first derived-class argument
  my $later = Future->new;
  my $all = Future->needs_all($done, $later);
  is(ref $all, 'Future', 'needs_all with it: a plain Future');
  my $all_waiter = (async sub { await $all; 'all' })->();
  ok(!$all_waiter->is_ready, '... awaited as pending while a part is');
  $later->done;
  is($all_waiter->get, 'all', '... and resumed when all are done');
}

# What a receive with its event already there returns: a done Future of the event, in
# every respect a Future (built directly when Future is the pure-Perl one it knows)
{
  no warnings 'once';
  note 'PAGI::Server::Future::ready builds ' . (PAGI::Server::Future::DIRECT() ? 'directly' : 'through Future->done');
  my $ev = {type => 'http.request', body => 'x', more => 0};
  my $f = PAGI::Server::Future::ready($ev);
  ok($f->isa('Future') && $f->is_ready && $f->is_done && !$f->is_failed && !$f->is_cancelled,
    'ready(): a done Future');
  is($f->state, 'done', '... in state done');
  is($f->get, $ev, '... get gives the event');
  is_deeply([$f->result], [$ev], '... result too');
  is((async sub { my $got = await $f; $got })->()->get, $ev, '... await gives the event');
  is_deeply([(async sub { my @got = await PAGI::Server::Future::ready(1, 2); scalar @got })->()->get], [2],
    '... all of its values in list context');
  is($f->then(sub ($e) { Future->done($e->{body} . 'y') })->get, 'xy', '... ->then runs with the event');
  my $seen;
  $f->on_done(sub ($e) { $seen = $e });
  is($seen, $ev, '... on_done runs at once with it');
  my $both = Future->needs_all($f, Future->done('z'));
  is_deeply([$both->get], [$ev, 'z'], '... it joins needs_all');
  my $other = PAGI::Server::Future::ready('other');
  isnt($other, $f, 'each call gives a Future of its own');
  is($other->get, 'other', '... with its own value');
}

done_testing;

