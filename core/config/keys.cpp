// Every configuration key of tess, by section. Defaults follow the TESS 2
// reference (docs/method.md); a deviation is a key whose default is the
// reference's behaviour. docs/configs.md is generated from this file.
#include "core/config/choices.h"
#include "core/config/schema.h"
#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/guidance.h"
#include "core/diffusion/noise_scheduler.h"
#include "core/diffusion/sampler.h"
#include "core/model/model_config.h"

namespace tess::config {
namespace {

void add_run(Schema& s) {
  s.section("run", "What the run is and where it writes.");
  s.required("run.stage", Type::String,
             "Which trainer runs: causal LM, stage 1 adaptation, stage 2 instruction tuning, or reward model.")
      .choices(run_stage_choices().names());
  s.add("run.name", "run", "Name shown in logs and metrics.");
  s.add("run.dir", "runs/run", "Run directory: effective config, logs, metrics, checkpoints.");
  s.add("run.seed", 1234, "Seed of every named random generator of the run.").min(0);
  s.add("run.device", "auto", "Where tensors live; auto picks CUDA when available (GPU LOCAL_RANK per process).")
      .choices({"auto", "cpu", "cuda"});
  s.add("run.threads", 0, "Intra-op CPU threads; 0 lets Torch decide.").min(0);
  s.add("run.cpu_allocator", "caching",
        "Memory of large CPU tensors: caching = blocks mapped in size classes and reused step after step, the mapped "
        "total bounded by the run's highest live bytes + 1/8 (resident memory stays near `tess plan`); system = "
        "LibTorch's default (glibc malloc, which keeps the freed heap: 25-35% more resident memory in training).")
      .choices(cpu_allocator_choices().names());
}

void add_model(Schema& s) {
  s.section("model", "The decoder: an HF-format checkpoint directory, or a fresh one built from the shape keys.");
  s.add("model.path", "", "HF-format model directory (config.json + safetensors) to start from; empty builds a fresh model.");
  s.add("model.architecture", "llama", "Decoder family of a fresh model.").choices({"llama", "mistral"});
  s.add("model.vocab_size", 32000, "Vocabulary size of a fresh model (the tokenizer's size when one is given).")
      .range(2, static_cast<double>(model::ModelConfig::kMaxVocab));
  s.add("model.hidden_size", 256, "Hidden size of a fresh model.").range(1, static_cast<double>(model::ModelConfig::kMaxHidden));
  s.add("model.intermediate_size", 688, "SwiGLU inner size of a fresh model.")
      .range(1, static_cast<double>(model::ModelConfig::kMaxIntermediate));
  s.add("model.num_layers", 4, "Decoder layers of a fresh model.").range(1, static_cast<double>(model::ModelConfig::kMaxLayers));
  s.add("model.num_heads", 4, "Attention heads of a fresh model.").range(1, static_cast<double>(model::ModelConfig::kMaxHeads));
  s.add("model.num_kv_heads", 4, "Key/value heads (grouped-query attention) of a fresh model.")
      .range(1, static_cast<double>(model::ModelConfig::kMaxHeads));
  s.add("model.rope_theta", 10000.0, "Rotary embedding base of a fresh model.").above(0);
  s.add("model.rms_norm_eps", 1e-5, "RMSNorm epsilon of a fresh model.").above(0);
  s.add("model.max_position_embeddings", 2048, "Longest sequence of a fresh model.")
      .range(1, static_cast<double>(model::ModelConfig::kMaxPositions));
  s.add("model.sliding_window", 0, "Sliding-window attention span (Mistral); 0 = full attention.").min(0);
  s.add("model.tie_word_embeddings", false, "Share the input embedding and the LM head of a fresh model.");
  s.add("model.dtype", "float32", "Parameter dtype.").choices({"float32", "bfloat16"});
  s.add("model.attention", "auto",
        "Attention mask; auto = causal for stage ar, bidirectional for diffusion stages (causal there is the paper's "
        "ablation, saved with the model).")
      .choices(attention_setting_choices().names());
  s.add("model.activation_checkpointing", false, "Recompute each layer's activations in backward to save memory.");
  s.add("model.add_pad_token", true, "Add a [PAD] token (and grow the embeddings) when the tokenizer has none, as the reference does.");
}

void add_data(Schema& s) {
  s.section("data", "Training and validation data, tokenizer and span masking.");
  s.add("data.tokenizer", "", "SentencePiece model file; empty uses the tokenizer of model.path.");
  s.add("data.train", std::vector<std::string>{}, "Training inputs: token-shard directories (stage ar/adaptation) or chat JSONL files (instruction/reward).");
  s.add("data.validation", std::vector<std::string>{}, "Validation inputs, same kinds as data.train.");
  s.add("data.seq_len", 512, "Sequence length L of every training example.")
      .range(4, static_cast<double>(model::ModelConfig::kMaxPositions));
  s.add("data.skip_bad_records", false, "Skip malformed JSONL records (reported with their line numbers) instead of failing.");
  s.add("data.prefetch", 4, "Batches prepared ahead of the training step by the background loader.").min(0);
}

// Corpus shards, packing and the loader (data/corpus.h, data/loader.h).
void add_data_corpus(Schema& s) {
  s.add("data.packing", "concat", "How token datasets become seq_len sequences: documents joined with EOS and cut every seq_len tokens (the reference), or never crossing a document boundary (tails padded with [PAD]).")
      .choices({"concat", "no_cross"});
  s.add("data.bos_per_document", false, "Put BOS before every document when packing (as HF Llama/Mistral tokenizers do); EOS always follows each document.");
  s.add("data.shuffle", true, "Shuffle the sample order every epoch (a permutation drawn from run.seed and the epoch).");
  s.add("data.verify_checksums", false, "Check the sha256 of every shard against meta.json when opening token datasets (reads all data once; sizes are always checked).");
}

// UL2 span masking and chat datasets (data/masking.h, data/chat.h).
void add_data_masking_chat(Schema& s) {
  s.add("data.ul2.objectives", std::vector<std::string>{"prefix_lm", "t5_short", "t5_long", "extreme_8", "extreme_3", "extreme_48"},
        "UL2 objectives of stage 1; one is drawn per batch (data.ul2.variant's mixture unless data.ul2.weights).")
      .choices({"prefix_lm", "t5_short", "t5_long", "extreme_8", "extreme_3", "extreme_48"});
  s.add("data.ul2.variant", "reference",
        "reference = the TESS 2 reference's ul2 mixture (three groups at equal chance -- prefix-LM, t5, aggressive t5 -- "
        "then a member uniformly: prefix_lm 1/3, t5_* 1/6, extreme_* 1/9; prefix: the start token and 1..floor((L-1)/2)-1 "
        "more tokens clean; span counts floored; rows end noised); tess_v1 = tess's first mixture (six at equal chance, "
        "prefix 1..L-2, counts rounded, the last segment clean or empty).")
      .choices(ul2_variant_choices().names());
  s.add("data.ul2.weights", std::vector<double>{},
        "Relative chance of each objective, in the order of data.ul2.objectives; empty = data.ul2.variant's mixture.")
      .min(0);
  s.add("data.ul2.prefix_lm.max_prefix_ratio", 1.0,
        "prefix_lm: caps the clean prefix at floor(ratio*L) tokens (tess_v1: drawn from 1..max(1, min(L-2, "
        "floor(ratio*L)))); 1.0 = the variant's own range.")
      .above(0).max(1);
  struct Spans {
    const char* name;
    double ratio;
    double mean;
  };
  for (const Spans& o : {Spans{"t5_short", 0.15, 3.0}, Spans{"t5_long", 0.15, 8.0}, Spans{"extreme_8", 0.5, 8.0},
                         Spans{"extreme_3", 0.5, 3.0}, Spans{"extreme_48", 0.5, 48.0}}) {
    s.add(std::string("data.ul2.") + o.name + ".mask_ratio", o.ratio,
          std::string(o.name) + ": fraction of the tokens noised (a count in 1..L-1: floored, rounded under tess_v1).")
        .above(0).max(1);
    s.add(std::string("data.ul2.") + o.name + ".mean_span", o.mean,
          std::string(o.name) + ": mean length of a noised span (spans = floor(noised / mean_span), round under tess_v1).")
        .min(1);
  }
  s.add("data.chat.turns", "first", "Which turns of a conversation are used: the first user/assistant pair, or all (earlier turns as clean context).")
      .choices(chat_turns_choices().names());
  s.add("data.chat.system_message", false, "Render a leading system message as <|system|>\\n{system}\\n before the first user turn (else it is left out and counted).");
  s.add("data.chat.too_long", "truncate_right",
        "Examples longer than seq_len: truncate_right = cut the whole sequence at seq_len, so the response loses its end "
        "and </s> (the reference; a prompt that leaves no response token is dropped); truncate_prompt = cut the prompt "
        "from the left, keeping template markers and the whole response; drop = leave the example out.")
      .choices(too_long_choices().names());
}

void add_diffusion(Schema& s) {
  s.section("diffusion", "Simplex diffusion: noise schedule, self-conditioning and loss normalisation.");
  s.add("diffusion.simplex_value", 5.0, "Simplex value k: a token is +k at its id and -k elsewhere.").above(0);
  s.add("diffusion.timesteps", 5000, "Training diffusion steps T.").min(1);
  s.add("diffusion.schedule", "cosine_improved", "Noise schedule of abar.")
      .choices(diffusion::schedule_choices().names());
  s.add("diffusion.self_condition", "logits_mean", "How the previous prediction is combined with the noisy simplex.")
      .choices(diffusion::self_condition_choices().names());
  s.add("diffusion.self_condition_prob", 0.5, "Chance per batch that training runs the no-grad self-conditioning pass.").range(0, 1);
  s.add("diffusion.embedding_grad", false, "Let gradients flow into E through the softmax(x_t) @ E input projection (the reference detaches it).");
  s.add("diffusion.shift_labels", true,
        "Shifted labels: the hidden state at j - 1 predicts the token at j, so the pretrained LM head is reused (the "
        "recipe). false = the paper's ablation: position j predicts its own token. Saved with the model.");
  s.add("diffusion.loss_normalization", "global_tokens", "Average the loss over all span tokens of the optimizer step (global) or per micro-batch as the reference does.")
      .choices(loss_normalization_choices().names());
}

void add_train(Schema& s) {
  s.section("train", "Optimisation loop.");
  s.add("train.batch_size", 8, "Sequences per micro-batch per process.").min(1);
  s.add("train.grad_accum", 1, "Micro-batches accumulated per optimizer step.").min(1);
  s.add("train.max_steps", 1000, "Optimizer steps to run; 0 = run train.epochs instead.").min(0);
  s.add("train.epochs", 0.0, "Passes over the data when max_steps is 0.").min(0);
  s.add("train.lr", 1e-5, "Peak learning rate.").above(0);
  s.add("train.lr_schedule", "constant", "Learning-rate shape after warmup.").choices(lr_shape_choices().names());
  s.add("train.warmup_steps", 0, "Linear warmup steps (used when warmup_ratio is 0).").min(0);
  s.add("train.warmup_ratio", 0.0, "Warmup as a fraction of all steps.").range(0, 1);
  s.add("train.min_lr_ratio", 0.0, "Floor of the decaying schedules as a fraction of lr.").range(0, 1);
  s.add("train.weight_decay", 0.0, "AdamW weight decay.").min(0);
  s.add("train.decay_norms_and_embeddings", false, "Apply weight decay to norms, biases and embeddings too.");
  s.add("train.adam_beta1", 0.9, "AdamW beta1.").range(0, 1);
  s.add("train.adam_beta2", 0.999, "AdamW beta2.").range(0, 1);
  s.add("train.adam_eps", 1e-8, "AdamW epsilon.").above(0);
  s.add("train.grad_clip", 1.0, "Clip the global gradient norm to this value; 0 disables.").min(0);
  s.add("train.precision", "fp32", "Arithmetic: fp32, bf16 autocast, or bf16 weights with an fp32 master copy.")
      .choices(precision_choices().names());
  s.add("train.nonfinite_policy", "abort", "What a NaN/Inf loss or gradient does (decided on all ranks together).")
      .choices(nonfinite_policy_choices().names());
  s.add("train.max_rollbacks", 3,
        "With nonfinite_policy rollback: rollbacks allowed in one run before it aborts (a model that keeps diverging "
        "is not rescued by skipping more data).")
      .min(1);
  s.add("train.inject_nonfinite_at", 0,
        "Testing aid: poison the loss of this step (until the first rollback) to exercise nonfinite_policy; 0 = off.")
      .min(0);
  s.add("train.eval_every", 0, "Run validation every N steps; 0 = never.").min(0);
  s.add("train.eval_batches", 8, "Validation batches per evaluation.").min(1);
}

void add_dist(Schema& s) {
  s.section("dist", "Data parallelism over c10d (NCCL on GPUs, Gloo on CPU); rank and world size come from the torchrun environment.");
  s.add("dist.backend", "auto", "Process-group backend; auto = NCCL with CUDA, else Gloo.").choices({"auto", "nccl", "gloo"});
  s.add("dist.bucket_mb", 25.0, "Gradient all-reduce bucket size in MiB.").above(0);
  s.add("dist.overlap", true,
        "Start each gradient bucket's all-reduce during backward as soon as its gradients are ready (not with "
        "train.precision bf16_master, whose fp32 master gradients exist only after backward).");
  s.add("dist.zero", 0, "ZeRO stage: 0 = replicated optimizer state, 1 = optimizer state sharded across ranks.").range(0, 1);
  s.add("dist.timeout_s", 300.0, "A collective that takes longer fails the run, naming the missing rank.").above(0);
}

void add_checkpoint(Schema& s) {
  s.section("checkpoint", "Sharded checkpoints and resume.");
  s.add("checkpoint.every", 500, "Save every N optimizer steps; 0 = only at the end and on SIGTERM/SIGINT.").min(0);
  s.add("checkpoint.keep_last", 3,
        "Checkpoints kept; after a successful save the oldest commits beyond this are deleted (never the new one).")
      .min(1);
  s.add("checkpoint.resume", "auto",
        "auto = the newest committed checkpoint of run.dir if any; none = start fresh (refused while run.dir holds "
        "checkpoints, unless checkpoint.overwrite); or a checkpoint directory.");
  s.add("checkpoint.overwrite", false,
        "With checkpoint.resume none: delete the checkpoints already in run.dir and start fresh (else that is an "
        "error, so that an earlier run's checkpoints are never lost by accident).");
  s.add("checkpoint.async", true, "Write checkpoints in a background thread (idle priority) that first copies the state while the next step's forward and backward run; the optimizer step waits for that copy, the next save and the end of training for the whole save.");
  s.add("checkpoint.verify", true, "Check every file's SHA-256 against the manifest when resuming.");
}

void add_eval(Schema& s) {
  s.section("eval", "Sampling and evaluation (`tess eval CONFIG` reads this section; its flags override it).");
  s.add("eval.model", "", "Model directory to evaluate; empty = the final model of the config's run (run.dir/final).");
  s.add("eval.data", "", "Eval records, JSONL: chat \"messages\" or \"prompt\", with \"answer\" (+ \"task\", \"choices\").");
  s.add("eval.metrics", std::vector<std::string>{"exact_match", "diversity", "speed"}, "Metrics to compute.")
      .choices({"exact_match", "multiple_choice", "perplexity", "diversity", "reward", "speed"});
  s.add("eval.extraction", "full", "Answer extraction of exact_match: whole answer, last number (GSM8k), first line.")
      .choices({"full", "last_number", "first_line"});
  s.add("eval.decoding", "auto", "How the model generates; auto = ar when run.stage is ar, else diffusion.")
      .choices({"auto", "diffusion", "ar"});
  s.add("eval.seed", 0, "Seed of the generate stream (and of multiple_choice noise).").min(0);
  s.add("eval.limit", 0, "Evaluate only the first N records; 0 = all.").min(0);
  s.add("eval.choice_samples", 8, "Diffusion multiple_choice: noise draws per choice.").min(1);
  s.add("eval.task", "",
        "A benchmark read from its public JSONL format (eval.data), prompted and scored as the reference does "
        "(docs/evaluation.md); its scores replace exact_match and multiple_choice. Empty = eval records.")
      .choices({"", "gsm8k", "squad", "triviaqa", "ifeval", "bbh", "mmlu", "alpaca_eval"});
  s.add("eval.shots", -1, "Few-shot exemplars of eval.task; -1 = the reference's (gsm8k 8, squad 3, triviaqa 2, bbh 3, mmlu 0).")
      .min(-1);
  s.add("eval.task_prompts", "", "bbh: the directory of BBH's chain-of-thought prompts, cot-prompts/<task>.txt.");
  s.add("eval.mmlu_mode", "generation",
        "mmlu: generation = the answer's first letter (the reference); likelihood = the most likely letter under the "
        "model (AR log-likelihood, diffusion loss estimate over eval.choice_samples draws).")
      .choices({"generation", "likelihood"});
  s.add("eval.reference_outputs", "",
        "alpaca_eval: JSONL {\"instruction\", \"output\"} the model's outputs are judged against (eval.reward_model "
        "judges); empty = the data records' own \"output\".");
  s.add("eval.perplexity_model", "", "AR model directory for the perplexity metric.");
  s.add("eval.sweep", "", "A grid over one setting, e.g. steps=8,16,32,64,100 (also guidance_scale, top_p, length, cache_refresh, and "
        "with sample.adaptive stable_steps and margin); empty = one run.");
  s.add("eval.output", "", "JSON report file (with a sweep also an .svg plot beside it); empty = table only.");
  s.add("eval.samples", "", "JSONL file of the generated answers; empty = not written.");
  s.add("eval.plot", "", "SVG plot of each metric against the swept setting; empty = beside eval.output.");
  s.add("eval.steps", 100, "Diffusion sampling steps N.").range(1, static_cast<double>(diffusion::kMaxSamplingSteps));
  s.add("eval.span_length", 256, "Tokens generated per answer (the fixed span).").min(1);
  s.add("eval.top_p", 0.99, "Nucleus sampling mass; 0 = argmax.").range(0, 1);
  s.add("eval.temperature", 1.0, "Softmax temperature of token choice.").above(0);
  s.add("eval.batch_size", 8, "Prompts sampled together (diffusion: one sampler call; AR: one batched decode, right-padded).").min(1);
  s.add("eval.guidance_scale", 0.0, "Reward-guidance step size; 0 disables guidance.").min(0);
  s.add("eval.reward_model", "", "Reward model directory for guidance and the reward metric.");
  s.add("eval.guidance_read", "last",
        "Where reward guidance reads the reward: last = the row's last position, as the reference does; first_eos = the "
        "first span position predicted as EOS (where the reward model was trained to score), else the last.")
      .choices(diffusion::reward_read_choices().names());
  s.add("eval.device", "auto",
        "Where the sampler runs: auto (CUDA device 0 when LibTorch sees one), cpu, cuda or cuda:N. Tokens are chosen "
        "on the host; scoring models (reward, perplexity, multiple choice) run on the CPU.");
}

void add_sample(Schema& s) {
  s.section("sample",
            "The diffusion sampler's adaptive stopping and prompt cache (tess generate and tess eval; their flags "
            "override it).");
  s.add("sample.adaptive", false,
        "Stop a row once its span has settled (sample.stable_steps, sample.margin); eval.steps is the budget. Each "
        "prompt then draws from a stream of its own, so its answer does not depend on the prompts batched with it. "
        "false = the fixed-step sampler, bit for bit.");
  s.add("sample.stable_steps", 2, "Adaptive stopping: consecutive steps the argmax tokens of a row's span must stay unchanged.")
      .min(1);
  s.add("sample.margin", 0.5,
        "Adaptive stopping: the smallest top-1 minus top-2 probability over the row's span positions must reach this.")
      .range(0, 1);
  s.add("sample.freeze", false,
        "Freeze single positions whose argmax held for sample.stable_steps steps with sample.margin: they keep that "
        "token, clean, from then on (with or without sample.adaptive; each prompt then draws from its own stream).");
  s.add("sample.cache_refresh", 0,
        "Approximate prompt cache: run the whole sequence every N steps (and at the first), in between only the span "
        "and the position before it, attending to the keys/values the last full pass recorded. 0 = off; 1 = a full "
        "pass every step, the same logits as off.")
      .min(0);
  s.add("sample.seed_per_prompt", false,
        "Every prompt draws from a fresh \"generate\" stream seeded by eval.seed alone, as if it were the only "
        "prompt: its answer no longer depends on its place in the file or on its batch, and equals `tess serve`'s "
        "answer to it with that seed (diffusion only).");
}

void add_log(Schema& s) {
  s.section("log", "Logging, metrics and progress output.");
  s.add("log.level", "info", "Console and file log level.").choices({"trace", "debug", "info", "warn", "error"});
  s.add("log.every", 10, "Write metrics every N optimizer steps.").min(1);
  s.add("log.all_ranks", false, "Print every rank's log lines to the console (files always get them).");
  s.add("log.on_write_error", "stop",
        "A failed write of the log file (disk full): stop = end the run with that error after a last checkpoint "
        "attempt; warn = say so once and train on with an incomplete log. A failed write of metrics.jsonl, "
        "config.yaml or a checkpoint always stops the run.")
      .choices(log_write_error_choices().names());
  s.add("log.tensorboard", true, "Write TensorBoard event files to the run directory.");
  s.add("log.peak_gflops", 0.0,
        "The matmul rate (GFLOP/s per process) each step's mfu in metrics.jsonl is measured against; 0 measures it "
        "at start: square 1024 matmuls of the training precision on the run's device, best of 5.")
      .min(0);
  s.add("log.progress_interval_s", 10.0, "Seconds between plain progress lines when the output is not a terminal.").above(0);
}

Schema build() {
  Schema s;
  add_run(s);
  add_model(s);
  add_data(s);
  add_data_corpus(s);
  add_data_masking_chat(s);
  add_diffusion(s);
  add_train(s);
  add_dist(s);
  add_checkpoint(s);
  add_eval(s);
  add_sample(s);
  add_log(s);
  return s;
}

}  // namespace

const Schema& schema() {
  static const Schema instance = build();
  return instance;
}

}  // namespace tess::config
