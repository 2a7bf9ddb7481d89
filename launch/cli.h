#pragma once
// The `tess` command line. Each subcommand lives in launch/commands/ and
// registers itself on the app; run() is the whole program (main() only calls
// it), so tests can drive the CLI in-process too.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include <string>

namespace CLI {
class App;
}

namespace tess::cli {

// What a chosen subcommand does once parsing succeeded; returns the exit code.
using Action = std::function<int()>;

void add_config_command(CLI::App& app, Action& action);
void add_model_command(CLI::App& app, Action& action);     // tess model info|forward|init
void add_debug_command(CLI::App& app, Action& action);
void add_train_command(CLI::App& app, Action& action);     // tess train CONFIG
void add_checkpoint_command(CLI::App& app, Action& action);  // tess checkpoint verify|export
void add_tokenize_command(CLI::App& app, Action& action);  // tess tokenize train-spm|...
void add_launch_command(CLI::App& app, Action& action);    // tess launch --nproc N -- ARGS...
void add_generate_command(CLI::App& app, Action& action);  // tess generate --model DIR --prompt TEXT
void add_eval_command(CLI::App& app, Action& action);      // tess eval --model DIR --data FILE
void add_convert_command(CLI::App& app, Action& action);   // tess convert gguf IN.gguf OUT_DIR
void add_bench_command(CLI::App& app, Action& action);     // tess bench peak|train|sample|data|checkpoint|dist|all
void add_plan_command(CLI::App& app, Action& action);
void add_serve_command(CLI::App& app, Action& action);     // tess serve --model DIR [--port 8000]      // tess plan CONFIG --world-size N --gpu-memory-gb G
// `tess tokenize` sub-subcommands that live in their own files.
void add_tokenize_corpus_commands(CLI::App& tokenize, Action& action);  // corpus -> token shards
void add_tokenize_chat_commands(CLI::App& tokenize, Action& action);    // quickstart data, chat sets


// "tess 0.1.0 (git abc123)\nLibTorch 2.15.0, CUDA ..."
std::string version_text();

// "1 5 9" or "1,5,9" -> {1, 5, 9}; a token that is not an integer is an error naming `flag`.
std::vector<int64_t> parse_int_list(const std::string& text, const char* flag);
// The same for token ids: at least one, each in [0, vocab).
std::vector<int64_t> parse_token_ids(const std::string& text, const char* flag, int64_t vocab);

int run(int argc, char** argv);

}  // namespace tess::cli
