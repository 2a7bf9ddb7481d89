// `tess serve --model DIR [...]`: an OpenAI-compatible HTTP server with
// step-by-step streaming and a live denoising page (launch/serve/, docs/serving.md).
#include <CLI/CLI.hpp>

#include "launch/cli.h"
#include "launch/serve/server.h"

namespace tess::cli {

void add_serve_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<serve::ServeOptions>();
  auto* cmd = app.add_subcommand(
      "serve", "Serve a diffusion model over an OpenAI-compatible HTTP API with a live denoising page (docs/serving.md)");
  cmd->add_option("--model", o->engine.model, "Diffusion model directory (weights, config.json, tokenizer)")->required();
  cmd->add_option("--reward-model", o->engine.reward_model,
                  "Reward model directory (same tokenizer): enables the guidance_scale request parameter");
  cmd->add_option("--host", o->host, "Address to bind (127.0.0.1: this machine only)")->capture_default_str();
  cmd->add_option("--port", o->port, "TCP port (0: any free port; the chosen one is printed)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on every API request");
  cmd->add_option("--name", o->name, "Model id requests name in 'model' (default: the --model path as given)");
  cmd->add_option("--max-batch", o->engine.max_batch, "Rows (request choices) denoised together")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-queue", o->engine.max_queue, "Requests that may wait for room; beyond them: 429")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", o->engine.device, "Where the model runs: auto (a GPU when LibTorch sees one), cpu, cuda or cuda:N")
      ->capture_default_str();
  cmd->add_option("--steps", o->steps, "Default denoising steps of a request")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-tokens", o->max_tokens, "Default span length (max_tokens) of a request")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--top-p", o->top_p, "Default nucleus mass of a request (0 = argmax)")->capture_default_str();
  cmd->add_option("--seed", o->engine.seed, "Requests without a seed draw theirs from this one (the server's 'request.<k>' stream)")
      ->capture_default_str();
  cmd->callback([o, &action] { action = [o] { return serve::run_server(*o); }; });
}

}  // namespace tess::cli
