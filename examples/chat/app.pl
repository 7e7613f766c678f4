# A WebSocket chat room: every message goes to everyone connected, with join and
# leave notices.
#
#   bin/pagi-server examples/chat/app.pl --port 5000
#
# then open http://127.0.0.1:5000/ in two browser windows (add ?name=alice to pick a
# name). GET / serves the page; the page opens a WebSocket to /ws?name=NAME and sends
# {"text": "..."}; the server broadcasts {"type": "join"|"message"|"leave", "name",
# "text"} as JSON text messages. The room lives in the process: run one process
# (with --workers N, each worker would have a room of its own).
use strict;
use warnings;
use Future;
use Future::AsyncAwait;
use JSON::PP ();

my $json = JSON::PP->new->utf8(0)->canonical;    # text frames carry characters
my %clients;                                      # id => $send of each open socket
my $next_id = 0;

# Sends to every client; one slow or gone client does not hold up the others
sub broadcast {
  my ($msg) = @_;
  my $text = $json->encode($msg);
  return Future->wait_all(map {
    $_->({type => 'websocket.send', text => $text})->else(sub { Future->done })
  } values %clients);
}

sub name_from_query {
  my ($qs) = @_;
  my ($name) = ($qs // '') =~ /(?:^|&)name=([^&]*)/;
  $name = '' unless defined $name;
  $name =~ tr/+/ /;
  $name =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
  utf8::decode($name);
  $name =~ s/[^\w .@-]//g;
  return length $name ? substr($name, 0, 32) : 'guest-' . int(rand 1000);
}

async sub chat {
  my ($scope, $receive, $send) = @_;
  my $ev = await $receive->();                    # websocket.connect
  await $send->({type => 'websocket.accept'});
  my $id = ++$next_id;
  my $name = name_from_query($scope->{query_string});
  $clients{$id} = $send;
  await broadcast({type => 'join', name => $name});
  while (1) {
    $ev = await $receive->();
    last if $ev->{type} eq 'websocket.disconnect';
    next unless defined $ev->{text};
    my $msg = eval { $json->decode($ev->{text}) };
    my $text = ref $msg eq 'HASH' ? $msg->{text} : $ev->{text};
    next unless defined $text && !ref $text && length $text;
    await broadcast({type => 'message', name => $name, text => substr($text, 0, 1000)});
  }
  delete $clients{$id};
  await broadcast({type => 'leave', name => $name});
}

my $page = do { local $/; <DATA> };

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';          # nothing to set up
  if ($scope->{type} eq 'websocket') {
    return await chat($scope, $receive, $send) if $scope->{path} eq '/ws';
    await $receive->();
    return await $send->({type => 'websocket.close'});    # unknown path: 403
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
<title>PAGI chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #messages { list-style: none; padding: 0; min-height: 10em; border: 1px solid #ccc; }
  #messages li { padding: .2em .5em; }
  #messages li.notice { color: #777; font-style: italic; }
  form { display: flex; gap: .5em; } input { flex: 1; }
</style>
</head>
<body data-state="connecting">
<h1>PAGI chat</h1>
<p id="status">connecting&hellip;</p>
<ul id="messages"></ul>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something" autofocus><button>Send</button></form>
<script>
const name = new URLSearchParams(location.search).get('name') || '';
const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
const ws = new WebSocket(`${scheme}//${location.host}/ws?name=${encodeURIComponent(name)}`);
const list = document.getElementById('messages');
const status = document.getElementById('status');

function add(cls, text) {
  const li = document.createElement('li');
  li.className = cls;
  li.textContent = text;
  list.appendChild(li);
}
ws.onopen = () => { status.textContent = 'connected'; document.body.dataset.state = 'open'; };
ws.onclose = (e) => {
  status.textContent = `disconnected (${e.code})`;
  document.body.dataset.state = 'closed';
};
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === 'message') add('message', `${m.name}: ${m.text}`);
  else add('notice', `${m.name} ${m.type === 'join' ? 'joined' : 'left'}`);
};
document.getElementById('form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = document.getElementById('text');
  if (input.value && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({text: input.value}));
  input.value = '';
});
</script>
</body>
</html>
