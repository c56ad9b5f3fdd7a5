// SPDX-License-Identifier: Apache-2.0
#include <diffuse/training/torch_checkpoint.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <diffuse/config.h>
#include <diffuse/training/safetensors.h>

namespace diffuse {

namespace {

// ---- a restricted pickle machine ----
//
// LibTorch's unpickler turns collections.OrderedDict (what state_dict() returns) into None, so it
// cannot read state dicts. This machine understands the opcodes of pickle protocols 2-5 that
// torch.save emits and builds only data: dicts, lists, tuples, numbers, strings, and tensors
// rebuilt from the archive's storages through a fixed list of torch functions. Any other
// callable (argparse.Namespace, a model class) becomes an opaque value; nothing is executed.

struct PyObj;
using PyRef = std::shared_ptr<PyObj>;

struct PyObj {
  enum Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor,
    kOpaque
  };
  Kind kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s;  // str, bytes, global "module.name", opaque class name
  std::vector<PyRef> items;
  std::vector<std::pair<PyRef, PyRef>> dict;
  at::Tensor tensor;  // storage (1-D) or tensor
};

PyRef make(PyObj::Kind k) {
  auto o = std::make_shared<PyObj>();
  o->kind = k;
  return o;
}

const char* kind_name(const PyRef& o) {
  static const char* const names[] = {"None",    "bool",   "int",   "float", "str",
                                      "bytes",   "tuple",  "list",  "dict",  "global",
                                      "storage", "tensor", "object"};
  return names[o->kind];
}

bool storage_dtype(const std::string& cls, at::ScalarType* out) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"torch.FloatStorage", at::kFloat}, {"torch.DoubleStorage", at::kDouble},
      {"torch.HalfStorage", at::kHalf},   {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.LongStorage", at::kLong},   {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort}, {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},   {"torch.BoolStorage", at::kBool},
      {"torch.UntypedStorage", at::kByte}};
  auto it = kTypes.find(cls);
  if (it == kTypes.end()) return false;
  *out = it->second;
  return true;
}

class PickleMachine {
 public:
  PickleMachine(const uint8_t* data, size_t size, const detail::PickleRecordReader& reader,
                std::string path)
      : begin_(data), p_(data), end_(data + size), reader_(reader), path_(std::move(path)) {}

  // Every object made is in arena_; unlinking them all first makes destruction iterative (a
  // hostile pickle nests containers deeply, or makes cycles through the memo).
  ~PickleMachine() {
    for (const PyRef& o : arena_) {
      o->items.clear();
      o->dict.clear();
    }
  }
  PickleMachine(const PickleMachine&) = delete;
  PickleMachine& operator=(const PickleMachine&) = delete;

  PyRef run() {
    for (;;) {
      const size_t at = static_cast<size_t>(p_ - begin_);
      const uint8_t op = byte();
      switch (op) {
        case 0x80:
          byte();
          break;  // PROTO
        case 0x95:
          bytes(8);
          break;  // FRAME
        case '}':
          push(obj(PyObj::kDict));
          break;  // EMPTY_DICT
        case ']':
          push(obj(PyObj::kList));
          break;  // EMPTY_LIST
        case ')':
          push(obj(PyObj::kTuple));
          break;  // EMPTY_TUPLE
        case '(':
          marks_.push_back(stack_.size());
          break;  // MARK
        case 't':
          push(from_mark(PyObj::kTuple));
          break;  // TUPLE
        case 'l':
          push(from_mark(PyObj::kList));
          break;     // LIST
        case 'd': {  // DICT
          PyRef items = from_mark(PyObj::kList);
          push(to_dict(items->items));
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          PyRef t = obj(PyObj::kTuple);
          const size_t n = op - 0x84u;
          need(n);
          t->items.assign(stack_.end() - static_cast<long>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(t);
          break;
        }
        case 'c': {  // GLOBAL
          PyRef g = obj(PyObj::kGlobal);
          const std::string module = line(), name = line();
          g->s = module + "." + name;
          push(g);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          PyRef name = pop(), module = pop();
          check_kind(name, PyObj::kStr, at);
          check_kind(module, PyObj::kStr, at);
          PyRef g = obj(PyObj::kGlobal);
          g->s = module->s + "." + name->s;
          push(g);
          break;
        }
        case 'q':
          memo(byte());
          break;  // BINPUT
        case 'r':
          memo(u32());
          break;  // LONG_BINPUT
        case 0x94:
          memo(static_cast<uint32_t>(memo_.size()));
          break;  // MEMOIZE
        case 'h':
          push(get(byte(), at));
          break;  // BINGET
        case 'j':
          push(get(u32(), at));
          break;  // LONG_BINGET
        case 'X':
          push(str(PyObj::kStr, u32()));
          break;  // BINUNICODE
        case 0x8c:
          push(str(PyObj::kStr, byte()));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push(str(PyObj::kStr, u64()));
          break;  // BINUNICODE8
        case 'C':
          push(str(PyObj::kBytes, byte()));
          break;  // SHORT_BINBYTES
        case 'B':
          push(str(PyObj::kBytes, u32()));
          break;  // BINBYTES
        case 'K':
          push(integer(byte()));
          break;  // BININT1
        case 'M':
          push(integer(u16()));
          break;  // BININT2
        case 'J':
          push(integer(static_cast<int32_t>(u32())));
          break;      // BININT
        case 0x8a: {  // LONG1
          const size_t n = byte();
          check_io(n <= 8, path_, ": pickle integer of ", n, " bytes at offset ", at,
                   " (more than 64 bits)");
          const uint8_t* b = bytes(n);
          uint64_t v = 0;
          for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(b[k]) << (8 * k);
          if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);
          push(integer(static_cast<int64_t>(v)));
          break;
        }
        case 'G': {  // BINFLOAT (big-endian)
          const uint8_t* b = bytes(8);
          uint64_t v = 0;
          for (int k = 0; k < 8; ++k) v = (v << 8) | b[k];
          PyRef o = obj(PyObj::kFloat);
          std::memcpy(&o->f, &v, 8);
          push(o);
          break;
        }
        case 0x88:
        case 0x89: {  // NEWTRUE / NEWFALSE
          PyRef o = obj(PyObj::kBool);
          o->i = op == 0x88;
          push(o);
          break;
        }
        case 'N':
          push(obj(PyObj::kNone));
          break;
        case 'Q':
          push(persistent(pop(), at));
          break;     // BINPERSID
        case 'R': {  // REDUCE
          PyRef args = pop(), fn = pop();
          push(reduce(fn, args, at));
          break;
        }
        case 0x81: {  // NEWOBJ
          PyRef args = pop(), cls = pop();
          push(reduce(cls, args, at));
          break;
        }
        case 'b':
          pop();
          break;     // BUILD: object state (OrderedDict._metadata, objects) dropped
        case 's': {  // SETITEM
          PyRef v = pop(), k = pop();
          dict_of(top(), at)->dict.emplace_back(k, v);
          break;
        }
        case 'u': {  // SETITEMS
          PyRef kv = from_mark(PyObj::kList);
          PyRef d = dict_of(top(), at);
          check_io(kv->items.size() % 2 == 0, path_, ": odd SETITEMS at offset ", at);
          for (size_t k = 0; k < kv->items.size(); k += 2)
            d->dict.emplace_back(kv->items[k], kv->items[k + 1]);
          break;
        }
        case 'a': {  // APPEND
          PyRef v = pop();
          list_of(top(), at)->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          PyRef vs = from_mark(PyObj::kList);
          PyRef l = list_of(top(), at);
          l->items.insert(l->items.end(), vs->items.begin(), vs->items.end());
          break;
        }
        case '.': {  // STOP
          check_io(stack_.size() == 1, path_, ": the pickle ends with ", stack_.size(),
                   " values on its stack");
          return stack_.back();
        }
        default:
          throw IOError(detail::cat(path_, ": pickle opcode 0x", std::hex, static_cast<int>(op),
                                    std::dec, " at offset ", at,
                                    " is not one torch.save() writes for a state dict; convert "
                                    "the file with scripts/convert_checkpoint.py"));
      }
    }
  }

 private:
  PyRef obj(PyObj::Kind k) {
    check_io(arena_.size() < (1u << 24), path_, ": data.pkl makes too many objects");
    PyRef o = make(k);
    arena_.push_back(o);
    return o;
  }
  uint8_t byte() { return *bytes(1); }
  const uint8_t* bytes(uint64_t n) {
    check_io(n <= static_cast<uint64_t>(end_ - p_), path_, ": data.pkl is truncated (needs ", n,
             " more bytes at offset ", p_ - begin_, ")");
    const uint8_t* b = p_;
    p_ += n;
    return b;
  }
  uint32_t u16() {
    const uint8_t* b = bytes(2);
    return b[0] | (b[1] << 8);
  }
  uint32_t u32() {
    const uint8_t* b = bytes(4);
    return b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  uint64_t u64() {
    const uint8_t* b = bytes(8);
    uint64_t v = 0;
    for (int k = 7; k >= 0; --k) v = (v << 8) | b[k];
    return v;
  }
  std::string line() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', end_ - p_));
    check_io(nl != nullptr && nl - p_ < 256, path_, ": malformed GLOBAL in data.pkl");
    std::string s(reinterpret_cast<const char*>(p_), nl - p_);
    p_ = nl + 1;
    return s;
  }
  PyRef str(PyObj::Kind k, uint64_t n) {
    PyRef o = obj(k);
    const uint8_t* b = bytes(n);
    o->s.assign(reinterpret_cast<const char*>(b), n);
    return o;
  }
  PyRef integer(int64_t v) {
    PyRef o = obj(PyObj::kInt);
    o->i = v;
    return o;
  }
  void push(PyRef o) {
    check_io(stack_.size() < (1u << 24), path_, ": data.pkl stack too deep");
    stack_.push_back(std::move(o));
  }
  void need(size_t n) {
    check_io(stack_.size() >= n + (marks_.empty() ? 0 : marks_.back()), path_,
             ": data.pkl pops an empty stack (corrupt pickle)");
  }
  PyRef pop() {
    need(1);
    PyRef o = stack_.back();
    stack_.pop_back();
    return o;
  }
  const PyRef& top() {
    need(1);
    return stack_.back();
  }
  PyRef from_mark(PyObj::Kind k) {
    check_io(!marks_.empty() && marks_.back() <= stack_.size(), path_,
             ": data.pkl uses a MARK it never set (corrupt pickle)");
    PyRef o = obj(k);
    o->items.assign(stack_.begin() + static_cast<long>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return o;
  }
  PyRef to_dict(const std::vector<PyRef>& kv) {
    check_io(kv.size() % 2 == 0, path_, ": odd DICT item count in data.pkl");
    PyRef d = obj(PyObj::kDict);
    for (size_t k = 0; k < kv.size(); k += 2) d->dict.emplace_back(kv[k], kv[k + 1]);
    return d;
  }
  void memo(uint32_t index) {
    check_io(memo_.size() < (1u << 26), path_, ": data.pkl memo too large");
    memo_[index] = top();
  }
  PyRef get(uint32_t index, size_t at) {
    auto it = memo_.find(index);
    check_io(it != memo_.end(), path_, ": data.pkl reads memo ", index, " at offset ", at,
             " before writing it (corrupt pickle)");
    return it->second;
  }
  void check_kind(const PyRef& o, PyObj::Kind k, size_t at) {
    check_io(o->kind == k, path_, ": data.pkl has a ", kind_name(o), " at offset ", at, " where a ",
             kind_name(obj(k)), " belongs");
  }
  PyRef dict_of(const PyRef& o, size_t at) {
    if (o->kind == PyObj::kOpaque) return obj(PyObj::kDict);  // an object's items: dropped
    check_kind(o, PyObj::kDict, at);
    return o;
  }
  PyRef list_of(const PyRef& o, size_t at) {
    if (o->kind == PyObj::kOpaque) return obj(PyObj::kList);
    check_kind(o, PyObj::kList, at);
    return o;
  }

  // ('storage', torch.FloatStorage, key, location, numel) -> the record data/<key> as a 1-D tensor
  PyRef persistent(const PyRef& pid, size_t at) {
    check_io(pid->kind == PyObj::kTuple && pid->items.size() == 5 &&
                 pid->items[0]->kind == PyObj::kStr && pid->items[0]->s == "storage" &&
                 pid->items[1]->kind == PyObj::kGlobal && pid->items[2]->kind == PyObj::kStr &&
                 pid->items[4]->kind == PyObj::kInt,
             path_, ": persistent id at offset ", at, " is not a torch.save() storage reference");
    const std::string& key = pid->items[2]->s;
    auto cached = storages_.find(key);
    if (cached != storages_.end()) return cached->second;
    at::ScalarType dtype{};
    check_io(storage_dtype(pid->items[1]->s, &dtype), path_, ": storage type ", pid->items[1]->s,
             " is not supported");
    const int64_t numel = pid->items[4]->i;
    const std::string record = "data/" + key;
    const detail::PickleRecord rec = reader_(record);  // throws when absent
    const uint64_t elem = c10::elementSize(dtype);
    check_io(numel >= 0 && static_cast<uint64_t>(numel) <= rec.size / elem, path_, ": storage ",
             key, " claims ", numel, " elements of ", elem, " bytes; its record has ", rec.size,
             " bytes");
    PyRef o = obj(PyObj::kStorage);
    const auto options = at::TensorOptions().dtype(dtype);
    if (rec.owner && numel > 0 && reinterpret_cast<uintptr_t>(rec.data) % elem == 0) {
      // The record's own buffer becomes the storage: no copy, and no second copy of the weights
      // while they are loaded.
      o->tensor = at::from_blob(
          const_cast<void*>(rec.data), {numel}, [owner = rec.owner](void*) {}, options);
    } else {
      o->tensor = at::empty({numel}, options);
      if (numel > 0) std::memcpy(o->tensor.data_ptr(), rec.data, numel * elem);
    }
    storages_[key] = o;
    return o;
  }

  static std::vector<int64_t> ints(const PyRef& t, const std::string& path, const char* what) {
    check_io(t->kind == PyObj::kTuple || t->kind == PyObj::kList, path, ": tensor ", what,
             " is not a tuple");
    std::vector<int64_t> v;
    for (const PyRef& x : t->items) {
      check_io(x->kind == PyObj::kInt, path, ": tensor ", what, " holds a ", kind_name(x));
      v.push_back(x->i);
    }
    return v;
  }

  PyRef rebuild_tensor(const std::vector<PyRef>& a, size_t at) {
    check_io(a.size() >= 4 && a[0]->kind == PyObj::kStorage && a[1]->kind == PyObj::kInt, path_,
             ": _rebuild_tensor arguments at offset ", at,
             " are not (storage, offset, size, stride)");
    const at::Tensor& storage = a[0]->tensor;
    const int64_t offset = a[1]->i;
    const std::vector<int64_t> size = ints(a[2], path_, "size");
    const std::vector<int64_t> stride = ints(a[3], path_, "stride");
    check_io(size.size() == stride.size() && size.size() <= 64, path_,
             ": tensor size and stride differ in length or have over 64 dimensions");
    // Every element must lie inside the storage (a hostile file could point outside).
    int64_t last = offset, numel = 1;
    bool empty = false;
    for (size_t k = 0; k < size.size(); ++k) {
      check_io(size[k] >= 0 && stride[k] >= 0, path_, ": negative tensor size or stride");
      if (size[k] == 0)
        empty = true;
      else
        last += (size[k] - 1) * stride[k];
      numel *= std::max<int64_t>(size[k], 1);
      check_io(numel < (int64_t{1} << 40) && last < (int64_t{1} << 40), path_,
               ": tensor too large");
    }
    check_io(offset <= storage.numel() && (empty || last < storage.numel()), path_,
             ": a tensor of size ", detail::cat(at::IntArrayRef(size)), " at storage offset ",
             offset, " reaches past its storage of ", storage.numel(), " elements");
    PyRef o = obj(PyObj::kTensor);
    o->tensor = storage.as_strided(size, stride, offset);
    return o;
  }

  PyRef reduce(const PyRef& fn, const PyRef& args, size_t at) {
    const std::vector<PyRef> no_args;
    const std::vector<PyRef>& a = args->kind == PyObj::kTuple ? args->items : no_args;
    if (fn->kind == PyObj::kGlobal) {
      const std::string& f = fn->s;
      if (f == "collections.OrderedDict" || f == "builtins.dict" || f == "__builtin__.dict")
        return obj(PyObj::kDict);
      if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor")
        return rebuild_tensor(a, at);
      if ((f == "torch._utils._rebuild_parameter" ||
           f == "torch._utils._rebuild_parameter_with_state") &&
          !a.empty() && a[0]->kind == PyObj::kTensor)
        return a[0];
      if (f == "torch._tensor._rebuild_from_type_v2" && a.size() >= 3 &&
          a[0]->kind == PyObj::kGlobal && a[2]->kind == PyObj::kTuple && reduce_depth_ < 4) {
        ++reduce_depth_;
        PyRef r = reduce(a[0], a[2], at);
        --reduce_depth_;
        return r;
      }
      PyRef o = obj(PyObj::kOpaque);
      o->s = f;
      return o;
    }
    PyRef o = obj(PyObj::kOpaque);
    o->s = "?";
    return o;
  }

  const uint8_t* const begin_;
  const uint8_t* p_;
  const uint8_t* const end_;
  const detail::PickleRecordReader& reader_;
  std::string path_;
  std::vector<PyRef> stack_;
  std::vector<size_t> marks_;
  std::map<uint32_t, PyRef> memo_;
  std::map<std::string, PyRef> storages_;
  std::vector<PyRef> arena_;
  int reduce_depth_ = 0;
};

// A dict whose keys are all strings and values all tensors.
bool is_tensor_dict(const PyRef& v) {
  if (v->kind != PyObj::kDict) return false;
  for (const auto& [k, x] : v->dict)
    if (k->kind != PyObj::kStr || x->kind != PyObj::kTensor) return false;
  return true;
}

}  // namespace

bool detail::starts_with_zip_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {0, 0, 0, 0};
  f.read(magic, 4);
  return f.gcount() == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

bool is_torch_save_archive(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) || !detail::starts_with_zip_magic(path))
    return false;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    return reader.hasRecord("data.pkl") && !reader.hasRecord("constants.pkl");
  } catch (const std::exception&) {
    return false;
  }
}

namespace detail {

TorchStateDict parse_torch_pickle(const uint8_t* data, size_t size,
                                  const PickleRecordReader& records, const std::string& path) {
  PickleMachine machine(data, size, records, path);
  const PyRef root = machine.run();
  TorchStateDict out;
  PyRef sd = root;
  if (!is_tensor_dict(root)) {
    check_io(root->kind == PyObj::kDict, path, ": the pickled object is a ", kind_name(root),
             root->kind == PyObj::kOpaque ? " (" + root->s + ")" : std::string(),
             ", not a state dict (save model.state_dict(), not the model)");
    bool found = false;
    for (const char* key : {"ema", "model", "state_dict"}) {
      for (const auto& [k, v] : root->dict) {
        if (k->kind == PyObj::kStr && k->s == key && is_tensor_dict(v)) {
          sd = v;
          out.entry = key;
          found = true;
          break;
        }
      }
      if (found) break;
    }
    if (!found) {
      std::vector<std::string> keys;
      for (const auto& kv : root->dict)
        keys.push_back(kv.first->kind == PyObj::kStr ? kv.first->s : kind_name(kv.first));
      throw IOError(detail::cat(path,
                                ": no state dict (string -> tensor) at the top level nor "
                                "under 'ema', 'model' or 'state_dict'; keys: ",
                                detail::list_some(keys)));
    }
  }
  for (const auto& [k, v] : sd->dict) {
    check_io(out.tensors.emplace(k->s, v->tensor).second, path, ": key '", k->s, "' appears twice");
  }
  return out;
}

}  // namespace detail

TorchStateDict read_torch_state_dict(const std::string& path) {
  std::error_code ec;
  check_io(std::filesystem::is_regular_file(path, ec), path, ": no such file");
  check_io(detail::starts_with_zip_magic(path), path,
           ": not a zip archive; a torch.save() file of PyTorch < 1.6 (legacy pickle) or another "
           "format. Convert it with scripts/convert_checkpoint.py");
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    check_io(reader.hasRecord("data.pkl"), path,
             ": a zip archive without data.pkl: not written by torch.save()");
    auto [pkl, pkl_size] = reader.getRecord("data.pkl");
    const detail::PickleRecordReader records = [&](const std::string& name) {
      check_io(reader.hasRecord(name), path, ": the archive has no record ", name);
      auto [ptr, size] = reader.getRecord(name);  // LibTorch's allocator: 64-byte aligned
      auto owner = std::make_shared<at::DataPtr>(std::move(ptr));
      return detail::PickleRecord{owner->get(), size, owner};
    };
    return detail::parse_torch_pickle(static_cast<const uint8_t*>(pkl.get()), pkl_size, records,
                                      path);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw IOError(detail::cat(path, ": unreadable torch.save() archive (",
                              what.substr(0, what.find('\n')), ")"));
  }
}

DiTOptions dit_options_from_state_dict(const std::map<std::string, at::Tensor>& raw,
                                       const std::string& what, int64_t num_heads) {
  std::map<std::string, at::Tensor> sd;
  for (const auto& [k, v] : raw) sd.emplace(detail::strip_wrapper_prefixes(k), v);
  auto need = [&](const std::string& key, int64_t dims) -> const at::Tensor& {
    auto it = sd.find(key);
    check(it != sd.end(), what, ": not a DiT / SiT state dict: no '", key,
          "' (reference names of facebookresearch/DiT models.py)");
    check(it->second.dim() == dims, what, ": '", key, "' has shape ", it->second.sizes(),
          ", expected ", dims, " dimensions");
    return it->second;
  };
  const at::Tensor& proj = need("x_embedder.proj.weight", 4);  // [d, C, p, p]
  const int64_t d = proj.size(0), c = proj.size(1), p = proj.size(2);
  check(p == proj.size(3) && p > 0, what, ": x_embedder.proj.weight ", proj.sizes(),
        " is not a square patch");
  const at::Tensor& pos = need("pos_embed", 3);  // [1, N, d]
  const int64_t n = pos.size(1);
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  check(side * side == n && pos.size(2) == d, what, ": pos_embed ", pos.sizes(),
        " is not a square grid of ", d, "-wide tokens");
  int64_t depth = 0;
  while (sd.count("blocks." + std::to_string(depth) + ".attn.qkv.weight")) ++depth;
  check(depth >= 1, what, ": no blocks.0.attn.qkv.weight");
  const at::Tensor& fc1 = need("blocks.0.mlp.fc1.weight", 2);    // [h, d]
  const at::Tensor& out = need("final_layer.linear.weight", 2);  // [p*p*C_out, d]
  const int64_t out_channels = out.size(0) / (p * p);
  check(out_channels * p * p == out.size(0) && (out_channels == c || out_channels == 2 * c), what,
        ": final_layer.linear.weight ", out.sizes(), " gives neither ", c, " nor ", 2 * c,
        " output channels");
  int64_t heads = num_heads;
  if (heads <= 0) {
    switch (d) {
      case 384:
        heads = 6;
        break;
      case 768:
        heads = 12;
        break;
      case 1024:
      case 1152:
        heads = 16;
        break;
      default:
        throw ConfigError(detail::cat(what, ": hidden size ", d,
                                      " is not one of DiT's Table 1 sizes (384, 768, 1024, "
                                      "1152): give the number of attention heads (card "
                                      "model=num_heads=H)"));
    }
  }
  DiTOptions o(side * p, c);
  o.patch_size(p).hidden_size(d).depth(depth).num_heads(heads);
  o.mlp_ratio(static_cast<double>(fc1.size(0)) / static_cast<double>(d));
  o.learn_sigma(out_channels == 2 * c);
  auto y = sd.find("y_embedder.embedding_table.weight");
  if (y != sd.end()) {
    check(y->second.dim() == 2 && y->second.size(0) >= 2, what,
          ": y_embedder.embedding_table.weight has shape ", y->second.sizes());
    o.num_classes(y->second.size(0) - 1);  // the last row is the null class
  }
  validate(o);
  return o;
}

ModelCard reference_dit_card(const DiTOptions& o, bool sit) {
  ModelCard card;
  card.architecture = "DiT";
  card.model = to_config(o);
  card.sample_shape = {o.in_channels(), o.input_size(), o.input_size()};
  card.num_classes = o.num_classes();
  card.clip_sample = false;
  card.vae = "sd-vae-ft-ema";
  // forward_with_cfg guides channels 0..2 only; the published samples and FIDs use it.
  card.guided_channels = o.in_channels() == 4 ? 3 : 0;
  if (sit) {
    card.schedule = "flow:t_scale=1";
    card.prediction_type = "flow_prediction";
    card.reversed_time = true;
    card.description =
        "SiT (willisma/SiT): linear interpolant, velocity prediction; time 0 = noise, 1 = data";
  } else {
    card.schedule = "discrete:beta_schedule=linear;beta_start=0.0001;beta_end=0.02";
    card.prediction_type = "epsilon";
    card.learned_variance = o.learn_sigma();  // DiT's DDPM sampler uses it
    card.description = "DiT (facebookresearch/DiT): linear betas, 1000 steps, epsilon";
  }
  return card;
}

namespace detail {

std::optional<LoadedModel> load_torch_save_model(const std::string& path,
                                                 const LoadModelOptions& options) {
  if (!is_torch_save_archive(path)) return std::nullopt;
  TorchStateDict sd = read_torch_state_dict(path);
  std::string file = std::filesystem::path(path).filename().string();
  for (char& ch : file) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const bool sit = file.rfind("sit", 0) == 0 || file.find("-sit") != std::string::npos ||
                   file.find("_sit") != std::string::npos;
  // model=... of the caller's card: the options it names replace the inferred ones.
  Config given_model;
  for (const std::string& item : card_items(options.card))
    if (item.rfind("model=", 0) == 0) given_model = parse_config(item.substr(6));
  int64_t heads = 0;
  if (given_model.count("num_heads")) {
    ConfigReader r(given_model, "model card for '" + path + "'");
    heads = r.get_int("num_heads", 0);
  }
  Config merged = to_config(dit_options_from_state_dict(sd.tensors, path, heads));
  for (const auto& [k, v] : given_model) merged[k] = v;
  const ModelCard base = reference_dit_card(dit_options_from_config(merged), sit);
  ModelCard card = options.card.empty()
                       ? base
                       : parse_model_card(override_card_text(model_card_text(base), options.card),
                                          path + " with --model-card");
  card.model = merged;
  std::error_code ec;
  DiT model =
      dit_from_card(card, path, static_cast<uint64_t>(std::filesystem::file_size(path, ec)));
  try {
    adopt_dit_state_dict(model, std::move(sd.tensors));
  } catch (const Error& e) {
    throw ConfigError(cat(path, ": ", e.what()));
  }
  return finish_dit(model, std::move(card), options, path,
                    sd.entry.empty() ? "torch.save state dict"
                                     : "torch.save checkpoint ('" + sd.entry + "' weights)");
}

}  // namespace detail

}  // namespace diffuse
