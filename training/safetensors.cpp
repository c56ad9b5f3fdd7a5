// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/safetensors.h>.
#include <diffuse/training/safetensors.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/training/atomic_file.h>

namespace diffuse {

namespace detail {

/// Throws a diffuse::IOError "<file>: <what>" when cond is false (a malformed file).
template <class... Args>
void st_check(bool cond, const std::string& file, const Args&... args) {
  if (!cond) throw IOError(cat(file, ": ", args...));
}

int json_nesting_depth(const char* begin, const char* end) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char* p = begin; p != end; ++p) {
    const char c = *p;
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char b = 0;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

bool safetensors_dtype(const std::string& name, at::ScalarType* out) {
  static const std::map<std::string, at::ScalarType> table = {
      {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
      {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
      {"U8", at::kByte},    {"BOOL", at::kBool}};
  auto it = table.find(name);
  if (it == table.end()) return false;
  *out = it->second;
  return true;
}

bool safetensors_dtype_known_unsupported(const std::string& name) {
  static const std::set<std::string> names = {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "C64"};
  return names.count(name) > 0;
}

std::string safetensors_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kDouble:
      return "F64";
    case at::kFloat:
      return "F32";
    case at::kHalf:
      return "F16";
    case at::kBFloat16:
      return "BF16";
    case at::kLong:
      return "I64";
    case at::kInt:
      return "I32";
    case at::kShort:
      return "I16";
    case at::kChar:
      return "I8";
    case at::kByte:
      return "U8";
    case at::kBool:
      return "BOOL";
    default:
      return "";
  }
}

std::string json_excerpt(const nlohmann::json& j) {
  std::string s = j.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

bool json_uint(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    *out = static_cast<uint64_t>(v);
    return true;
  }
  return false;
}

}  // namespace detail

namespace {

// parse_safetensors; `consumed`, when given, is told after each tensor's bytes are copied out how
// far into `data` every byte has been read (the tensors in file order).
SafetensorsFile parse_safetensors_impl(const uint8_t* data, size_t size,
                                       const std::string& name_for_errors, const TensorFilter& keep,
                                       const std::function<void(const uint8_t*)>& consumed) {
  using detail::st_check;
  using nlohmann::json;
  const std::string& f = name_for_errors;
  st_check(detail::host_is_little_endian(), f,
           "safetensors stores little-endian data and this host is big-endian (not supported)");
  st_check(size >= 8, f, "not a safetensors file: ", size,
           " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  st_check(n <= detail::kSafetensorsMaxHeader, f, "header length ", n,
           " bytes exceeds the limit of ", detail::kSafetensorsMaxHeader,
           " (not a safetensors file, or a corrupt one)");
  st_check(n <= size - 8, f, "header length ", n, " bytes exceeds the ", size - 8,
           " bytes after the length field (truncated file?)");
  st_check(n >= 2 && data[8] == '{', f,
           "the header does not start with '{' (not a safetensors file, or a corrupt one)");
  const char* header_begin = reinterpret_cast<const char*>(data + 8);
  const char* header_end = header_begin + n;
  const int depth = detail::json_nesting_depth(header_begin, header_end);
  st_check(depth <= detail::kSafetensorsMaxDepth, f, "the header nests arrays/objects ", depth,
           " levels deep (limit ", detail::kSafetensorsMaxDepth,
           "; not a safetensors file, or a corrupt one)");

  // Duplicate keys: nlohmann keeps the last silently, the format forbids them. Track the keys of
  // every open object during the parse.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default:
        break;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(header_begin, header_end, on_event);
  } catch (const json::exception& e) {
    throw IOError(detail::cat(f, ": the header is not valid JSON: ", e.what()));
  }
  st_check(duplicate.empty(), f, "the header has the key '", duplicate,
           "' twice (duplicate keys are not allowed)");
  st_check(header.is_object(), f, "the header is not a JSON object");

  const uint64_t buffer_size = static_cast<uint64_t>(size) - 8 - n;
  const uint8_t* buffer = data + 8 + n;
  SafetensorsFile out;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  std::vector<std::pair<std::string, at::ScalarType>> dtypes;
  std::vector<std::vector<int64_t>> shapes;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      st_check(v.is_object(), f, "__metadata__ must be an object of strings, got ",
               detail::json_excerpt(v));
      for (auto m = v.begin(); m != v.end(); ++m) {
        st_check(m.value().is_string(), f, "__metadata__ value of '", m.key(),
                 "' must be a string, got ", detail::json_excerpt(m.value()));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    st_check(v.is_object(), f, where, ": the entry must be an object, got ",
             detail::json_excerpt(v));
    for (auto k = v.begin(); k != v.end(); ++k)
      st_check(k.key() == "dtype" || k.key() == "shape" || k.key() == "data_offsets", f, where,
               ": unknown field '", k.key(), "' (expected dtype, shape, data_offsets)");
    st_check(v.contains("dtype") && v["dtype"].is_string(), f, where,
             ": 'dtype' is missing or not a string");
    st_check(v.contains("shape") && v["shape"].is_array(), f, where,
             ": 'shape' is missing or not an array");
    st_check(
        v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
        f, where, ": 'data_offsets' must be an array [begin, end], got ",
        v.contains("data_offsets") ? detail::json_excerpt(v["data_offsets"]) : "nothing");

    const std::string dtype_name = v["dtype"].get<std::string>();
    at::ScalarType dtype{};
    if (!detail::safetensors_dtype(dtype_name, &dtype)) {
      st_check(!detail::safetensors_dtype_known_unsupported(dtype_name), f, where, ": dtype '",
               dtype_name, "' has no LibTorch equivalent in diffuse");
      throw IOError(detail::cat(f, ": ", where, ": unknown dtype '", dtype_name,
                                "' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)"));
    }
    const uint64_t itemsize = static_cast<uint64_t>(c10::elementSize(dtype));

    std::vector<int64_t> shape;
    uint64_t bytes = itemsize;
    bool overflow = false;
    for (const json& d : v["shape"]) {
      uint64_t dim = 0;
      st_check(detail::json_uint(d, &dim), f, where, ": shape ", detail::json_excerpt(v["shape"]),
               " has an entry that is not a non-negative integer");
      st_check(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), f, where,
               ": shape ", detail::json_excerpt(v["shape"]), " has a dimension over 2^63-1");
      shape.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && bytes > std::numeric_limits<uint64_t>::max() / dim)
        overflow = true;
      else
        bytes *= dim;
    }
    const bool empty = std::find(shape.begin(), shape.end(), 0) != shape.end();
    st_check(empty || !overflow, f, where, ": shape ", detail::json_excerpt(v["shape"]),
             " is too large (its byte size overflows 64 bits)");
    if (empty) bytes = 0;

    uint64_t begin = 0, end = 0;
    st_check(detail::json_uint(v["data_offsets"][0], &begin) &&
                 detail::json_uint(v["data_offsets"][1], &end),
             f, where, ": data_offsets ", detail::json_excerpt(v["data_offsets"]),
             " must be non-negative integers");
    st_check(begin <= end, f, where, ": data_offsets [", begin, ", ", end, "] has begin after end");
    st_check(end <= buffer_size, f, where, ": data_offsets [", begin, ", ", end,
             "] reach past the end of the data buffer (", buffer_size, " bytes; truncated file?)");
    st_check(end - begin == bytes, f, where, ": data_offsets [", begin, ", ", end, "] hold ",
             end - begin, " bytes but dtype ", dtype_name, " and shape ",
             detail::json_excerpt(v["shape"]), " need ", bytes);
    spans.push_back({begin, end, name});
    dtypes.emplace_back(name, dtype);
    shapes.push_back(std::move(shape));
  }

  // The tensors must tile the buffer: sorted by offset, each starts where the previous ended.
  std::vector<size_t> order(spans.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::make_pair(spans[a].begin, spans[a].end) <
           std::make_pair(spans[b].begin, spans[b].end);
  });
  uint64_t covered = 0;
  const Span* previous = nullptr;
  for (size_t i : order) {
    const Span& s = spans[i];
    st_check(s.begin >= covered, f, "tensors '", previous ? previous->name : "", "' [",
             previous ? previous->begin : 0, ", ", covered, ") and '", s.name, "' [", s.begin, ", ",
             s.end, ") overlap in the data buffer");
    st_check(s.begin == covered, f, "bytes [", covered, ", ", s.begin,
             ") of the data buffer belong to no tensor (the format requires the tensors to cover "
             "the buffer without gaps)");
    covered = s.end;
    previous = &s;
  }
  st_check(covered == buffer_size, f, "bytes [", covered, ", ", buffer_size,
           ") at the end of the data buffer belong to no tensor (the format requires the tensors "
           "to cover the buffer without gaps)");

  for (size_t i : order) {
    const Span& s = spans[i];
    if (keep && !keep(s.name)) continue;
    at::Tensor t = at::empty(shapes[i], at::TensorOptions().dtype(dtypes[i].second));
    if (s.end > s.begin)
      std::memcpy(t.data_ptr(), buffer + s.begin, static_cast<size_t>(s.end - s.begin));
    if (dtypes[i].second == at::kBool) {
      const uint8_t* b = buffer + s.begin;
      for (uint64_t k = 0; k < s.end - s.begin; ++k)
        st_check(b[k] <= 1, f, "tensor '", s.name, "': BOOL byte ", k, " is ",
                 static_cast<int>(b[k]), " (must be 0 or 1)");
    }
    out.tensors.emplace(s.name, std::move(t));
    if (consumed) consumed(buffer + s.end);
  }
  return out;
}

}  // namespace

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size,
                                  const std::string& name_for_errors, const TensorFilter& keep) {
  return parse_safetensors_impl(data, size, name_for_errors, keep, nullptr);
}

SafetensorsFile read_safetensors(const std::string& path, const TensorFilter& keep) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IOError(detail::cat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw IOError(detail::cat(path, ": cannot stat: ", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IOError(detail::cat(path, ": not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return parse_safetensors(nullptr, 0, path);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) throw IOError(detail::cat(path, ": cannot map: ", std::strerror(err)));
  // The pages of the file that have been copied out are dropped from the mapping as the copy
  // goes (they would otherwise stay resident beside the tensors: a 2.7 GB DiT-XL/2 would take
  // 5.4 GB while loading).
  const auto* base = static_cast<const uint8_t*>(map);
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t released = reinterpret_cast<uintptr_t>(base);
  const auto consumed = [&](const uint8_t* upto) {
    const uintptr_t end = reinterpret_cast<uintptr_t>(upto) / page * page;
    if (end <= released) return;
    ::madvise(reinterpret_cast<void*>(released), end - released, MADV_DONTNEED);  // advisory
    released = end;
  };
  try {
    SafetensorsFile out = parse_safetensors_impl(base, size, path, keep, consumed);
    ::munmap(map, size);
    return out;
  } catch (...) {
    ::munmap(map, size);
    throw;
  }
}

std::string safetensors_bytes(const std::map<std::string, at::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  check(detail::host_is_little_endian(), "safetensors: this host is big-endian (not supported)");
  std::vector<std::pair<std::string, at::Tensor>> items;
  for (const auto& kv : tensors) {
    check(!kv.first.empty(), "safetensors: a tensor has an empty name");
    check(kv.first != "__metadata__", "safetensors: '__metadata__' cannot name a tensor");
    check(kv.second.defined(), "safetensors: tensor '", kv.first, "' is undefined");
    check(!detail::safetensors_dtype_name(kv.second.scalar_type()).empty(), "safetensors: tensor '",
          kv.first, "' has dtype ", kv.second.scalar_type(),
          ", which the format cannot hold (F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
    items.emplace_back(kv.first, kv.second.detach().to(at::kCPU).contiguous());
  }
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return a.second.element_size() > b.second.element_size();
  });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : items) {
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", detail::safetensors_dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.reserve(8 + text.size() + offset);
  out += text;
  for (const auto& item : items) {
    const at::Tensor& t = item.second;
    out.append(static_cast<const char*>(t.data_ptr()),
               static_cast<size_t>(t.numel()) * t.element_size());
  }
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::string bytes;
  try {
    bytes = safetensors_bytes(tensors, metadata);
  } catch (const Error& e) {
    throw Error(detail::cat("cannot write '", path, "': ", e.what()));
  }
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

std::map<std::string, at::Tensor> dit_state_dict(DiT& model) {
  std::map<std::string, at::Tensor> sd;
  for (const auto& p : model->named_parameters()) sd[p.key()] = p.value().detach();
  for (const auto& b : model->named_buffers()) sd[b.key()] = b.value().detach();
  return sd;
}

namespace detail {

std::string strip_wrapper_prefixes(std::string key) {
  for (bool again = true; again;) {
    again = false;
    for (const char* p : {"module.", "_orig_mod."}) {
      const size_t len = std::strlen(p);
      if (key.size() > len && key.compare(0, len, p) == 0) {
        key = key.substr(len);
        again = true;
      }
    }
  }
  return key;
}

std::string list_some(const std::vector<std::string>& items, size_t shown) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < shown; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > shown) s += cat(", ... (", items.size(), " in all)");
  return s;
}

std::string StateDictProblems::text(const char* duplicated_what, bool strict) const {
  std::string out;
  auto add = [&](const std::string& what, const std::vector<std::string>& items) {
    if (items.empty()) return;
    out += cat(out.empty() ? "" : "; ", items.size(), " ", what, ": ", list_some(items));
  };
  if (strict) add("missing", missing);
  if (strict) add("unexpected", unexpected);
  add(duplicated_what, duplicated);
  add("shape mismatched", mismatched);
  add("not floating point", bad_dtype);
  return out;
}

}  // namespace detail

namespace {

// The checks of load_dit_state_dict; the (model tensor name, state-dict tensor) pairs to set.
std::vector<std::pair<std::string, at::Tensor>> match_dit_state_dict(
    DiT& model, const std::map<std::string, at::Tensor>& sd, bool strict) {
  std::map<std::string, at::Tensor> targets = dit_state_dict(model);
  std::map<std::string, std::pair<std::string, at::Tensor>> found;  // our name -> (key, tensor)
  detail::StateDictProblems pr;
  for (const auto& [key, value] : sd) {
    const std::string name = detail::strip_wrapper_prefixes(key);
    if (!targets.count(name)) {
      pr.unexpected.push_back(key);
      continue;
    }
    if (found.count(name)) {
      pr.duplicated.push_back(key + " (also " + found[name].first + ")");
      continue;
    }
    found[name] = {key, value};
  }
  for (const auto& [name, target] : targets) {
    auto it = found.find(name);
    if (it == found.end()) {
      pr.missing.push_back(name);
      continue;
    }
    const at::Tensor& v = it->second.second;
    if (!v.defined()) {
      pr.bad_dtype.push_back(it->second.first + " (undefined)");
      continue;
    }
    if (v.sizes() != target.sizes()) {
      std::string hint;
      if (name == "y_embedder.embedding_table.weight" && v.dim() == 2 &&
          v.size(0) == target.size(0) - 1)
        hint = "; a reference model trained with class_dropout_prob = 0 has no null-class row";
      pr.mismatched.push_back(
          detail::cat(it->second.first, " ", v.sizes(), " vs model ", target.sizes(), hint));
      continue;
    }
    if (at::isFloatingType(target.scalar_type()) && !at::isFloatingType(v.scalar_type()))
      pr.bad_dtype.push_back(detail::cat(it->second.first, " (", v.scalar_type(), ")"));
  }
  std::string problems = pr.text("duplicated (with and without a prefix)", strict);
  if (found.empty() && !sd.empty() && problems.empty())
    problems = "no key of the state dict names a tensor of the model";
  check(problems.empty(), "load_dit_state_dict: ", problems);
  std::vector<std::pair<std::string, at::Tensor>> pairs;
  for (const auto& [name, kv] : found) pairs.emplace_back(name, kv.second);
  return pairs;
}

// The model's parameters and buffers themselves (not detached: set_data reaches the module).
std::map<std::string, at::Tensor> dit_tensors(DiT& model) {
  std::map<std::string, at::Tensor> t;
  for (const auto& p : model->named_parameters()) t[p.key()] = p.value();
  for (const auto& b : model->named_buffers()) t[b.key()] = b.value();
  return t;
}

}  // namespace

void load_dit_state_dict(DiT& model, const std::map<std::string, at::Tensor>& sd, bool strict) {
  const auto pairs = match_dit_state_dict(model, sd, strict);
  std::map<std::string, at::Tensor> targets = dit_tensors(model);
  torch::NoGradGuard no_grad;
  for (const auto& [name, value] : pairs) targets.at(name).copy_(value);
}

void detail::adopt_or_copy(std::vector<std::pair<at::Tensor, at::Tensor>>& targets_and_values) {
  torch::NoGradGuard no_grad;
  std::set<const void*> storages;
  for (auto& [target, value] : targets_and_values) {
    const bool own = value.scalar_type() == target.scalar_type() &&
                     value.device() == target.device() && value.is_contiguous() &&
                     value.storage_offset() == 0 && value.storage().nbytes() == value.nbytes() &&
                     !value.requires_grad();
    if (own && storages.insert(value.storage().data()).second)
      target.set_data(value);
    else
      target.copy_(value);
    value = at::Tensor();  // a copied tensor's storage goes now, not at the end
  }
}

void detail::adopt_dit_state_dict(DiT& model, std::map<std::string, at::Tensor>&& sd, bool strict) {
  auto pairs = match_dit_state_dict(model, sd, strict);
  sd.clear();  // the pairs hold the tensors now
  std::map<std::string, at::Tensor> targets = dit_tensors(model);
  std::vector<std::pair<at::Tensor, at::Tensor>> work;
  for (auto& [name, value] : pairs) work.emplace_back(targets.at(name), std::move(value));
  pairs.clear();
  adopt_or_copy(work);
}

void save_dit_safetensors(const std::string& path, DiT& model,
                          std::map<std::string, std::string> metadata) {
  check(!metadata.count(kDiTMetadataKey), "save_dit_safetensors: metadata key '", kDiTMetadataKey,
        "' is reserved for the architecture");
  metadata[kDiTMetadataKey] = format_config(to_config(model->options));
  write_safetensors(path, dit_state_dict(model), metadata);
}

DiT load_dit_safetensors(const std::string& path, const std::optional<DiTOptions>& options) {
  SafetensorsFile f = read_safetensors(path);
  std::optional<DiTOptions> o = options;
  if (!o) {
    auto it = f.metadata.find(kDiTMetadataKey);
    check(it != f.metadata.end(), path, ": no '", kDiTMetadataKey,
          "' metadata describes the DiT architecture; give the DiT options explicitly");
    try {
      o = dit_options_from_config(parse_config(it->second));
    } catch (const Error& e) {
      throw Error(detail::cat(path, ": metadata '", kDiTMetadataKey, "': ", e.what()));
    }
  }
  std::error_code ec;
  detail::check_dit_fits_file(*o, static_cast<uint64_t>(std::filesystem::file_size(path, ec)),
                              path);
  DiT model = detail::unloaded_dit(*o);  // the strict load below sets every weight
  try {
    detail::adopt_dit_state_dict(model, std::move(f.tensors));
  } catch (const Error& e) {
    throw Error(detail::cat(path, ": ", e.what()));
  }
  return model;
}

void save_model_safetensors(const std::string& path, DiT model, ModelCard card) {
  card.architecture = "DiT";
  card.model = to_config(model->options);
  card.sample_shape = {model->options.in_channels(), model->options.input_size(),
                       model->options.input_size()};
  card.num_classes = model->options.num_classes();
  const std::string text = model_card_text(card);
  (void)parse_model_card(text, path);
  save_dit_safetensors(path, model, {{kCardMetadataKey, text}});
}

namespace detail {

std::optional<LoadedModel> load_safetensors_model(const std::string& path,
                                                  const LoadModelOptions& options) {
  const std::string ext = ".safetensors";
  if (path.size() < ext.size() || path.compare(path.size() - ext.size(), ext.size(), ext) != 0)
    return std::nullopt;
  SafetensorsFile f = read_safetensors(path);
  ModelCard card;
  if (!options.card.empty()) {
    card = parse_model_card(options.card, "model card for '" + path + "'");
  } else {
    auto it = f.metadata.find(kCardMetadataKey);
    check(it != f.metadata.end(), path, ": no '", kCardMetadataKey,
          "' metadata; give a model card (e.g. --model-card "
          "\"sample_shape=4x32x32,num_classes=1000\")");
    card = parse_model_card(it->second, path);
  }
  if (card.model.empty()) {
    auto it = f.metadata.find(kDiTMetadataKey);
    check(it != f.metadata.end(), path, ": neither the card nor the '", kDiTMetadataKey,
          "' metadata gives the DiT options (card key model=...)");
    card.model = parse_config(it->second);
  }
  std::error_code ec;
  const auto file_bytes = static_cast<uint64_t>(std::filesystem::file_size(path, ec));
  DiT model = dit_from_card(card, path, file_bytes);
  try {
    detail::adopt_dit_state_dict(model, std::move(f.tensors));
  } catch (const Error& e) {
    throw Error(cat(path, ": ", e.what()));
  }
  return finish_dit(model, std::move(card), options, path, "safetensors");
}

}  // namespace detail
}  // namespace diffuse
