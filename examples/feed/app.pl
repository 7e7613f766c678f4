# A live feed over Server-Sent Events: a numbered "tick" event every second.
#
#   bin/pagi-server examples/feed/app.pl --port 5000
#
# then open http://127.0.0.1:5000/ (or: curl -N -H 'Accept: text/event-stream'
# http://127.0.0.1:5000/events). Each event has an id; when the browser reconnects
# it sends Last-Event-ID and the feed carries on from the next number.
use strict;
use warnings;
use Future;
use Future::AsyncAwait;
use IO::Async::Loop;

my $INTERVAL = $ENV{FEED_INTERVAL} || 1;    # seconds between events

async sub feed {
  my ($scope, $receive, $send) = @_;
  await $receive->();                           # sse.request (a GET has no body)
  my ($last) = map { $_->[1] } grep { $_->[0] eq 'last-event-id' } @{$scope->{headers}};
  my $n = defined $last && $last =~ /\A[0-9]+\z/ ? $last + 1 : 1;

  # IO::Async::Loop->new is the server's loop: the app shares it
  my $loop = IO::Async::Loop->new;
  my $gone = $receive->();                      # sse.disconnect, when the client leaves
  await $send->({type => 'sse.start'});
  await $send->({type => 'sse.send', event => 'tick', id => $n, retry => 2000,
    data => "tick $n"});
  until ($gone->is_ready) {
    await Future->wait_any($loop->delay_future(after => $INTERVAL), $gone->without_cancel);
    last if $gone->is_ready;
    $n++;
    await $send->({type => 'sse.send', event => 'tick', id => $n, data => "tick $n"});
  }
}

my $page = do { local $/; <DATA> };

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';
  # Requests with Accept: text/event-stream arrive as sse scopes
  if ($scope->{type} eq 'sse') {
    return await feed($scope, $receive, $send) if $scope->{path} eq '/events';
    await $receive->();
    await $send->({type => 'sse.http.response.start', status => 404,
      headers => [['content-type', 'text/plain']]});
    return await $send->({type => 'sse.http.response.body', body => "not found\n"});
  }
  die "unsupported scope type $scope->{type}\n" unless $scope->{type} eq 'http';
  my ($status, $type, $body) = $scope->{path} eq '/'
    ? (200, 'text/html; charset=utf-8', $page)
    : (404, 'text/plain', "not found\n");
  await $send->({type => 'http.response.start', status => $status,
    headers => [['content-type', $type]]});
  await $send->({type => 'http.response.body', body => $body});
};

__DATA__
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PAGI live feed</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #events { font-family: monospace; }
</style>
</head>
<body data-state="connecting">
<h1>PAGI live feed</h1>
<p id="status">connecting&hellip;</p>
<ol id="events"></ol>
<script>
const list = document.getElementById('events');
const status = document.getElementById('status');
const source = new EventSource('/events');
source.onopen = () => { status.textContent = 'connected'; document.body.dataset.state = 'open'; };
source.onerror = () => { status.textContent = 'reconnecting…'; document.body.dataset.state = 'error'; };
source.addEventListener('tick', (e) => {
  const li = document.createElement('li');
  li.className = 'event';
  li.dataset.id = e.lastEventId;
  li.textContent = `#${e.lastEventId} ${e.data}`;
  list.appendChild(li);
});
</script>
</body>
</html>
