# A small Mojolicious application (in its PSGI mode) for t/71-psgi-frameworks.t
use Mojolicious::Lite -signatures;
use Mojo::Server::PSGI;
app->log->level('fatal');
get '/' => {text => 'Hello from Mojolicious'};
post '/form' => sub ($c) { $c->render(text => 'Hi ' . $c->param('name')) };
get '/stream' => sub ($c) {
  $c->res->headers->content_type('text/plain');
  $c->write_chunk('part 1;' => sub ($c, @) { $c->write_chunk("part 2;" => sub ($c, @) { $c->finish }) });
};
Mojo::Server::PSGI->new(app => app)->to_psgi_app;
