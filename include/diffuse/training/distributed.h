// SPDX-License-Identifier: Apache-2.0
// Data-parallel training on LibTorch's own c10d: rendezvous through a c10d::TCPStore (rank 0
// hosts it), gradients averaged with c10d::ProcessGroupGloo (CPU). Each process runs one Trainer
// on its slice of every global batch (Trainer::set_data_parallel); make_data_parallel() wires a
// Trainer to a DistributedContext. Launch N processes with RANK, WORLD_SIZE, MASTER_ADDR and
// MASTER_PORT set (torchrun's variables); see docs/distributed.md.
//
// Needs a LibTorch built with USE_DISTRIBUTED and USE_C10D_GLOO (Debian's and PyTorch's Linux
// builds are) and the gloo headers (Debian: libgloo-dev, the same gloo libtorch_cpu links). Not
// part of the <diffuse/training.h> umbrella: include it explicitly.
//
// NCCL: in CUDA builds of LibTorch that define USE_C10D_NCCL (PyTorch's CUDA wheels do; the macro
// reaches us through the torch_cuda target), collectives on CUDA tensors go through
// c10d::ProcessGroupNCCL (DistributedOptions::backend; see docs/distributed.md). Elsewhere
// DIFFUSE_HAS_NCCL is 0 and backend "nccl" is an error.
//
// LibTorch versions: the calls used (TCPStore(host, TCPStoreOptions), ProcessGroupGloo(store,
// rank, size, options), allreduce / broadcast / barrier returning a Work with wait(timeout)) have
// the same signatures in 1.13 and 2.x (where ProcessGroupGloo became a c10d::Backend), so no
// TORCH_VERSION_MAJOR branch is needed; only 1.13 is tested here.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#if !__has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#error \
    "diffuse/training/distributed.h: this LibTorch has no c10d headers (built without USE_DISTRIBUTED)"
#endif
#if !__has_include(<gloo/config.h>)
#error \
    "diffuse/training/distributed.h: the gloo headers are missing (Debian: apt-get install libgloo-dev)"
#endif

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/utils.h>  // torch::NoGradGuard
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(USE_C10D_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define DIFFUSE_HAS_NCCL 1
#else
#define DIFFUSE_HAS_NCCL 0
#endif

#include <diffuse/config.h>
#include <diffuse/training/trainer.h>

#if !defined(USE_C10D_GLOO)
#error "diffuse/training/distributed.h needs a LibTorch built with Gloo (USE_C10D_GLOO)"
#endif

namespace diffuse {

/// The communication backend of a DistributedContext (DistributedOptions::backend).
enum class DistributedBackend { automatic, gloo, nccl };

/// Names of DistributedBackend: "auto", "gloo", "nccl" (torch.distributed's names).
inline const std::vector<std::pair<std::string, DistributedBackend>>& distributed_backend_names() {
  static const std::vector<std::pair<std::string, DistributedBackend>> names{
      {"auto", DistributedBackend::automatic},
      {"gloo", DistributedBackend::gloo},
      {"nccl", DistributedBackend::nccl}};
  return names;
}

/// The DistributedBackend called `name`; anything else is a ConfigError naming it.
inline DistributedBackend parse_distributed_backend(const std::string& name) {
  return parse_enum(name, distributed_backend_names(), "DistributedOptions.backend");
}

inline std::string to_string(DistributedBackend backend) {
  return enum_name(backend, distributed_backend_names());
}

/// Where this process sits in a data-parallel job and how to reach the others.
struct DistributedOptions {
  /// This process's rank, in [0, world_size). Rank 0 hosts the TCPStore and writes the outputs.
  int rank = 0;
  /// Number of processes, >= 1.
  int world_size = 1;
  /// Address of rank 0's TCPStore (non-empty). Default "127.0.0.1" (one machine).
  std::string master_addr = "127.0.0.1";
  /// TCP port of rank 0's TCPStore, in [1, 65535]. Default 29500 (torchrun's).
  int master_port = 29500;
  /// Limit of the rendezvous and of every collective, > 0. A peer that died or stopped answering
  /// turns into a diffuse::Error after at most this long. Default 30 s.
  std::chrono::milliseconds timeout{30000};
  /// Communication backend:
  ///   automatic ("auto", default): Gloo for CPU tensors; for CUDA tensors NCCL where LibTorch
  ///          has it (DIFFUSE_HAS_NCCL; the NCCL group is created at the first collective on CUDA
  ///          tensors), else Gloo through host copies;
  ///   gloo: always Gloo (CUDA tensors are staged through host memory);
  ///   nccl: always NCCL (CPU tensors are staged through the CUDA device of the collective's
  ///          CUDA tensors, or the current CUDA device); an error on a LibTorch without NCCL.
  /// All ranks must use the same value. parse_distributed_backend() reads the names.
  DistributedBackend backend = DistributedBackend::automatic;

  /// Throws diffuse::Error naming the first bad field.
  void validate() const {
    check(world_size >= 1, "DistributedOptions.world_size must be >= 1, got ", world_size);
    check(rank >= 0 && rank < world_size, "DistributedOptions.rank must be in [0, ", world_size,
          "), got ", rank);
    check(!master_addr.empty(), "DistributedOptions.master_addr must not be empty");
    check(master_port >= 1 && master_port <= 65535,
          "DistributedOptions.master_port must be in [1, 65535], got ", master_port);
    check(timeout.count() > 0, "DistributedOptions.timeout must be > 0 ms, got ", timeout.count());
    check_enum(backend, distributed_backend_names(), "DistributedOptions.backend");
    check(backend != DistributedBackend::nccl || DIFFUSE_HAS_NCCL,
          "DistributedOptions.backend='nccl' but this LibTorch has no NCCL (ProcessGroupNCCL needs "
          "a CUDA build "
          "with USE_C10D_NCCL); use 'gloo' or 'auto'");
  }

  /// Reads RANK, WORLD_SIZE, MASTER_PORT (required) and MASTER_ADDR (default 127.0.0.1) from the
  /// environment, as torchrun sets them. Errors name the variable and its value.
  static DistributedOptions from_env(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(30000)) {
    const auto get_int = [](const char* name) {
      const char* v = std::getenv(name);
      check(v != nullptr && *v != '\0', "environment variable ", name,
            " is not set (launch with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, see "
            "docs/distributed.md)");
      const std::string s(v);
      size_t used = 0;
      long long x = 0;
      try {
        x = std::stoll(s, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      check(used == s.size() && used > 0 && x >= 0 && x <= 1000000000, "environment variable ",
            name, "='", s, "' is not a non-negative integer");
      return static_cast<int>(x);
    };
    DistributedOptions o;
    o.rank = get_int("RANK");
    o.world_size = get_int("WORLD_SIZE");
    o.master_port = get_int("MASTER_PORT");
    if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') o.master_addr = a;
    o.timeout = timeout;
    check(o.world_size >= 1, "environment variable WORLD_SIZE='", o.world_size, "' must be >= 1");
    check(o.rank < o.world_size, "environment variable RANK='", o.rank, "' must be < WORLD_SIZE (",
          o.world_size, ")");
    check(o.master_port >= 1 && o.master_port <= 65535, "environment variable MASTER_PORT='",
          o.master_port, "' must be in [1, 65535]");
    o.validate();
    return o;
  }
};

namespace detail {

/// The first line of an exception's message (c10 errors carry a backtrace after it).
inline std::string first_line(const std::exception& e) {
  std::string s;
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) {
    s = ce->what_without_backtrace();
  } else {
    s = e.what();
  }
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace detail

/// One process's membership of a c10d process group: a TCPStore for the rendezvous (rank 0 is the
/// server and waits for the others) and a ProcessGroupGloo for the collectives. Every operation
/// is bounded by DistributedOptions::timeout; any failure (a peer that exited or was killed, a
/// timeout, a refused connection) becomes a one-line diffuse::Error naming the operation and this
/// rank. After an error the context is unusable. Collectives must be called by all ranks in the
/// same order with tensors of the same shapes and dtypes. Not thread-safe.
class DistributedContext {
 public:
  explicit DistributedContext(DistributedOptions options) : options_(std::move(options)) {
    options_.validate();
    const auto& o = options_;
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<std::uint16_t>(o.master_port);
      so.isServer = o.rank == 0;
      so.numWorkers = static_cast<std::size_t>(o.world_size);
      so.waitWorkers = true;
      so.timeout = o.timeout;
      store_ = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
    } catch (const std::exception& e) {
      throw Error(detail::cat("distributed rendezvous failed on rank ", o.rank, " of ",
                              o.world_size, " (TCPStore at ", o.master_addr, ":", o.master_port,
                              ", timeout ", o.timeout.count(), " ms): ", detail::first_line(e)));
    }
    if (o.backend == DistributedBackend::nccl) {
      create_nccl();
      return;
    }
    try {
      auto go = c10d::ProcessGroupGloo::Options::create(o.timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && *ifname != '\0') {
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(o.master_addr)) {
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      gloo_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, o.rank, o.world_size, go);
    } catch (const std::exception& e) {
      throw Error(detail::cat("distributed process group creation failed on rank ", o.rank, " of ",
                              o.world_size, " (gloo, timeout ", o.timeout.count(),
                              " ms): ", detail::first_line(e)));
    }
  }

  DistributedContext(const DistributedContext&) = delete;
  DistributedContext& operator=(const DistributedContext&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  /// The backend the next collective on `cuda` (true: some tensor is on a CUDA device) uses:
  /// "gloo" or "nccl" (resolves DistributedOptions::backend "auto").
  std::string backend_for(bool cuda) const {
    if (options_.backend == DistributedBackend::automatic)
      return (cuda && DIFFUSE_HAS_NCCL) ? "nccl" : "gloo";
    return to_string(options_.backend);
  }
  /// Rank 0, the process that writes checkpoints and logs.
  bool is_main() const { return options_.rank == 0; }
  const DistributedOptions& options() const { return options_; }

  /// Replaces every tensor by its mean over all ranks, in place (of any floating dtypes; they are
  /// packed per dtype into one flat buffer on the backend's device, summed, divided by world_size
  /// and copied back; see DistributedOptions::backend for CPU and CUDA tensors). All ranks end
  /// with bit-identical values.
  void all_reduce_mean(std::vector<Tensor>& tensors) {
    if (options_.world_size == 1) return;
    guarded("all_reduce_mean", [&] {
      torch::NoGradGuard no_grad;
      const at::Device dev = collective_device(tensors);
      for (auto& group : by_dtype(tensors)) {
        Tensor flat = pack(tensors, group.second, dev);
        std::vector<Tensor> io{flat};
        c10d::AllreduceOptions ao;
        ao.reduceOp = c10d::ReduceOp::SUM;
        ao.timeout = options_.timeout;
        collective(dev, [&](auto& pg) { return pg.allreduce(io, ao); });
        flat.div_(static_cast<double>(options_.world_size));
        unpack(flat, tensors, group.second);
      }
    });
  }

  /// Overwrites every tensor with rank `root`'s values, in place (e.g. the initial parameters).
  void broadcast(std::vector<Tensor>& tensors, int root = 0) {
    check(root >= 0 && root < options_.world_size,
          "DistributedContext::broadcast: root must be in [0, ", options_.world_size, "), got ",
          root);
    if (options_.world_size == 1) return;
    guarded("broadcast", [&] {
      torch::NoGradGuard no_grad;
      const at::Device dev = collective_device(tensors);
      for (auto& group : by_dtype(tensors)) {
        Tensor flat = pack(tensors, group.second, dev);
        std::vector<Tensor> io{flat};
        c10d::BroadcastOptions bo;
        bo.rootRank = root;
        bo.rootTensor = 0;
        bo.timeout = options_.timeout;
        collective(dev, [&](auto& pg) { return pg.broadcast(io, bo); });
        unpack(flat, tensors, group.second);
      }
    });
  }

  /// Returns when every rank has called barrier().
  void barrier() {
    if (options_.world_size == 1) return;
    guarded("barrier", [&] {
      c10d::BarrierOptions bo;
      bo.timeout = options_.timeout;
#if DIFFUSE_HAS_NCCL
      if (!gloo_) {
        wait(nccl_->barrier(bo));
        return;
      }
#endif
      wait(gloo()->barrier(bo));
    });
  }

  /// Every rank's `tensor` in rank order, on every rank (a CPU tensor of the same shape and dtype
  /// on all ranks; e.g. sample_sharded()'s gather). With world_size 1: {a copy of tensor}.
  std::vector<Tensor> all_gather(const Tensor& tensor) {
    check(tensor.defined(), "DistributedContext::all_gather: the tensor is undefined");
    check(tensor.device().is_cpu(), "DistributedContext::all_gather: the tensor is on ",
          tensor.device(), "; the Gloo group here takes CPU tensors");
    if (options_.world_size == 1) return {tensor.clone()};
    std::vector<Tensor> out;
    guarded("all_gather", [&] {
      torch::NoGradGuard no_grad;
      std::vector<Tensor> in{tensor.contiguous()};
      std::vector<std::vector<Tensor>> gathered(1);
      for (int r = 0; r < options_.world_size; ++r) gathered[0].push_back(at::empty_like(in[0]));
      c10d::AllgatherOptions ao;
      ao.timeout = options_.timeout;
      wait(gloo()->allgather(gathered, in, ao));
      out = std::move(gathered[0]);
    });
    return out;
  }

 private:
  static bool is_loopback(const std::string& addr) {
    return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
  }

  template <typename F>
  void guarded(const char* op, F&& f) {
    check(!failed_, "distributed ", op, " on rank ", options_.rank,
          ": the process group failed earlier");
    try {
      f();
    } catch (const std::exception& e) {
      failed_ = true;
      throw Error(detail::cat("distributed ", op, " failed on rank ", options_.rank, " of ",
                              options_.world_size, " (a peer exited or did not answer within ",
                              options_.timeout.count(), " ms): ", detail::first_line(e)));
    }
  }

  template <typename W>
  void wait(const W& work) {
    if (!work->wait(options_.timeout)) throw Error("timed out");
  }

  static std::map<int, std::vector<size_t>> by_dtype(const std::vector<Tensor>& tensors) {
    std::map<int, std::vector<size_t>> groups;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      check(t.defined(), "distributed collective: tensor ", i, " is undefined");
      check(t.device().is_cpu() || t.device().is_cuda(), "distributed collective: tensor ", i,
            " is on ", t.device(), "; only CPU and CUDA tensors are supported");
      groups[static_cast<int>(t.scalar_type())].push_back(i);
    }
    return groups;
  }
  /// Where a collective's flat buffers live: the CPU for Gloo, a CUDA device for NCCL (the first
  /// CUDA tensor's, else the current one). Creates the NCCL group on first use ("auto").
  at::Device collective_device(const std::vector<Tensor>& tensors) {
    const Tensor* cuda = nullptr;
    for (const auto& t : tensors)
      if (t.defined() && t.is_cuda() && cuda == nullptr) cuda = &t;
    if (backend_for(cuda != nullptr) == "gloo") return at::kCPU;
#if DIFFUSE_HAS_NCCL
    if (!nccl_) create_nccl();
    if (cuda != nullptr) return cuda->device();
    return at::Device(at::kCUDA, c10::cuda::current_device());
#else
    throw Error("distributed collective: NCCL is not available in this LibTorch");
#endif
  }
  static Tensor pack(const std::vector<Tensor>& tensors, const std::vector<size_t>& idx,
                     const at::Device& dev) {
    std::vector<Tensor> flat;
    flat.reserve(idx.size());
    for (size_t i : idx) flat.push_back(tensors[i].reshape({-1}).to(dev));
    return at::cat(flat).contiguous();
  }
  static void unpack(const Tensor& flat, std::vector<Tensor>& tensors,
                     const std::vector<size_t>& idx) {
    int64_t offset = 0;
    for (size_t i : idx) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(flat.narrow(0, offset, n).view(tensors[i].sizes()));
      offset += n;
    }
  }

  const c10::intrusive_ptr<c10d::ProcessGroupGloo>& gloo() const {
    check(static_cast<bool>(gloo_), "distributed collective: no Gloo group (backend '",
          to_string(options_.backend), "')");
    return gloo_;
  }

  /// The NCCL group (on a PrefixStore, so that it never shares keys with the Gloo group).
  void create_nccl() {
#if DIFFUSE_HAS_NCCL
    const auto& o = options_;
    try {
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = o.timeout;
      auto store = c10::make_intrusive<c10d::PrefixStore>("diffuse_nccl", store_);
      nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, o.rank, o.world_size, no);
    } catch (const std::exception& e) {
      throw Error(detail::cat("distributed process group creation failed on rank ", o.rank, " of ",
                              o.world_size, " (nccl, timeout ", o.timeout.count(),
                              " ms): ", detail::first_line(e)));
    }
#endif
  }

  /// Runs op(process group) on NCCL for a CUDA `dev`, else on Gloo, and waits for it.
  template <typename Op>
  void collective(const at::Device& dev, Op&& op) {
#if DIFFUSE_HAS_NCCL
    if (dev.is_cuda()) {
      wait(op(*nccl_));
      return;
    }
#endif
    (void)dev;
    wait(op(*gloo()));
  }

  DistributedOptions options_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
#if DIFFUSE_HAS_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
#endif
  bool failed_ = false;
};

/// Makes `trainer` one data-parallel replica: broadcasts the model's and the EMA's parameters and
/// buffers from rank 0 (so every rank starts from rank 0's initialisation) and installs
/// ctx.all_reduce_mean as the trainer's gradient reduction (Trainer::set_data_parallel). Call it
/// on every rank before resume_latest() and train(); `ctx` must outlive the trainer's training.
template <typename M>
void make_data_parallel(Trainer<M>& trainer, DistributedContext& ctx) {
  trainer.set_data_parallel(ctx.rank(), ctx.world_size(),
                            [&ctx](std::vector<Tensor>& t) { ctx.all_reduce_mean(t); });
  std::vector<Tensor> state;
  for (auto* module : {&trainer.model(), &trainer.ema()}) {
    for (const auto& p : (*module)->parameters(true)) state.push_back(p);
    for (const auto& b : (*module)->buffers(true)) state.push_back(b);
  }
  ctx.broadcast(state, 0);
}

}  // namespace diffuse
