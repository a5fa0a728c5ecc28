// Power-loss simulation for RocksDB (see fault_env.h). Tests only.
#include "storage/fault_env.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace salvo::storage {
namespace {

using rocksdb::FileOptions;
using rocksdb::FSDirectory;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

IOStatus PowerOff() { return IOStatus::IOError("power cut (simulated)"); }

std::string StripSlash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::pair<std::string, std::string> SplitPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {StripSlash(path.substr(0, slash == 0 ? 1 : slash)),
          path.substr(slash + 1)};
}

// A writable file whose appends and syncs are gated by the power switch and
// reported to the file system's bookkeeping.
class TrackedWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackedWritableFile(std::unique_ptr<FSWritableFile> target,
                      PowerLossFileSystem* fs, std::string path, uint64_t size)
      : FSWritableFileOwnerWrapper(std::move(target)),
        fs_(fs),
        path_(std::move(path)),
        size_(size) {}

  IOStatus Append(const Slice& data, const IOOptions& o,
                  IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target()->Append(data, o, dbg);
    if (s.ok()) Grew(size_ + data.size());
    return s;
  }
  IOStatus Append(const Slice& data, const IOOptions& o,
                  const rocksdb::DataVerificationInfo& info,
                  IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target()->Append(data, o, info, dbg);
    if (s.ok()) Grew(size_ + data.size());
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset,
                            const IOOptions& o, IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target()->PositionedAppend(data, offset, o, dbg);
    if (s.ok()) Grew(std::max<uint64_t>(size_, offset + data.size()));
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset,
                            const IOOptions& o,
                            const rocksdb::DataVerificationInfo& info,
                            IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target()->PositionedAppend(data, offset, o, info, dbg);
    if (s.ok()) Grew(std::max<uint64_t>(size_, offset + data.size()));
    return s;
  }
  IOStatus Truncate(uint64_t size, const IOOptions& o,
                    IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target()->Truncate(size, o, dbg);
    if (s.ok()) {
      size_ = size;
      fs_->OnTruncateLocked(path_, size);
    }
    return s;
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target()->Sync(o, dbg);
    if (s.ok()) fs_->OnSyncLocked(path_, size_);
    return s;
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target()->Fsync(o, dbg);
    if (s.ok()) fs_->OnSyncLocked(path_, size_);
    return s;
  }
  // sync_file_range persists no metadata: no durability credit.
  IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const IOOptions& o,
                     IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    return target()->RangeSync(offset, nbytes, o, dbg);
  }

 private:
  void Grew(uint64_t size) {
    size_ = size;
    fs_->OnAppendLocked(path_, size);
  }
  PowerLossFileSystem* const fs_;
  const std::string path_;
  uint64_t size_;  // guarded by fs_->mu()
};

class TrackedDirectory final : public FSDirectory {
 public:
  TrackedDirectory(std::unique_ptr<FSDirectory> target,
                   PowerLossFileSystem* fs, std::string dir)
      : target_(std::move(target)), fs_(fs), dir_(std::move(dir)) {}

  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target_->Fsync(o, dbg);
    if (s.ok()) fs_->OnDirSyncLocked(dir_);
    return s;
  }
  IOStatus FsyncWithDirOptions(
      const IOOptions& o, IODebugContext* dbg,
      const rocksdb::DirFsyncOptions& dir_opts) override {
    std::lock_guard<std::mutex> lock(fs_->mu());
    if (!fs_->AdmitLocked()) return PowerOff();
    IOStatus s = target_->FsyncWithDirOptions(o, dbg, dir_opts);
    if (s.ok()) fs_->OnDirSyncLocked(dir_);
    return s;
  }
  IOStatus Close(const IOOptions& o, IODebugContext* dbg) override {
    return target_->Close(o, dbg);
  }
  size_t GetUniqueId(char* id, size_t max_size) const override {
    return target_->GetUniqueId(id, max_size);
  }

 private:
  std::unique_ptr<FSDirectory> target_;
  PowerLossFileSystem* const fs_;
  const std::string dir_;
};

}  // namespace

PowerLossFileSystem::PowerLossFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base)
    : FileSystemWrapper(base) {}

PowerLossFileSystem::~PowerLossFileSystem() = default;

void PowerLossFileSystem::CutPowerAtOp(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  cut_at_ = n > 0 ? ops_ + n : 0;
}

void PowerLossFileSystem::CutPower() {
  std::lock_guard<std::mutex> lock(mu_);
  power_off_ = true;
}

bool PowerLossFileSystem::power_is_off() const {
  std::lock_guard<std::mutex> lock(mu_);
  return power_off_;
}

int64_t PowerLossFileSystem::ops() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_;
}

bool PowerLossFileSystem::AdmitLocked() {
  if (power_off_) return false;
  ++ops_;
  if (cut_at_ > 0 && ops_ >= cut_at_) {
    power_off_ = true;
    return false;
  }
  return true;
}

void PowerLossFileSystem::OnAppendLocked(const std::string& path,
                                         uint64_t new_size) {
  files_[path].size = new_size;
}

void PowerLossFileSystem::OnSyncLocked(const std::string& path,
                                       uint64_t size) {
  FileState& f = files_[path];
  f.size = std::max(f.size, size);
  f.synced = size;
}

void PowerLossFileSystem::OnTruncateLocked(const std::string& path,
                                           uint64_t size) {
  FileState& f = files_[path];
  f.size = size;
  f.synced = std::min(f.synced, size);
}

void PowerLossFileSystem::OnDirSyncLocked(const std::string& dir) {
  pending_entries_.erase(StripSlash(dir));
}

void PowerLossFileSystem::NoteNewEntryLocked(const std::string& path,
                                             bool existed) {
  if (existed) return;  // the entry is durable; only its data is not
  auto [dir, name] = SplitPath(path);
  pending_entries_[dir].emplace(name, std::nullopt);  // keeps an older state
}

std::optional<std::string> PowerLossFileSystem::DurableContentLocked(
    const std::string& path) {
  auto [dir, name] = SplitPath(path);
  auto d = pending_entries_.find(dir);
  if (d != pending_entries_.end()) {
    auto e = d->second.find(name);
    if (e != d->second.end()) return e->second;
  }
  std::unique_ptr<rocksdb::FSSequentialFile> file;
  if (!target_->NewSequentialFile(path, FileOptions(), &file, nullptr).ok()) {
    return std::nullopt;
  }
  std::string content;
  std::vector<char> buf(1 << 16);
  for (;;) {
    Slice chunk;
    if (!file->Read(buf.size(), IOOptions(), &chunk, buf.data(), nullptr)
             .ok() ||
        chunk.empty()) {
      break;
    }
    content.append(chunk.data(), chunk.size());
  }
  auto f = files_.find(path);
  if (f != files_.end() && content.size() > f->second.synced) {
    content.resize(f->second.synced);
  }
  return content;
}

IOStatus PowerLossFileSystem::NewWritableFile(
    const std::string& f, const FileOptions& opts,
    std::unique_ptr<FSWritableFile>* r, IODebugContext* dbg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!AdmitLocked()) return PowerOff();
  const bool existed = target_->FileExists(f, IOOptions(), nullptr).ok();
  std::unique_ptr<FSWritableFile> file;
  IOStatus s = target_->NewWritableFile(f, opts, &file, dbg);
  if (!s.ok()) return s;
  files_[f] = FileState{};
  NoteNewEntryLocked(f, existed);
  *r = std::make_unique<TrackedWritableFile>(std::move(file), this, f, 0);
  return s;
}

IOStatus PowerLossFileSystem::ReopenWritableFile(
    const std::string& f, const FileOptions& opts,
    std::unique_ptr<FSWritableFile>* r, IODebugContext* dbg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!AdmitLocked()) return PowerOff();
  const bool existed = target_->FileExists(f, IOOptions(), nullptr).ok();
  uint64_t size = 0;
  if (existed) {
    IOStatus s = target_->GetFileSize(f, IOOptions(), &size, nullptr);
    if (!s.ok()) return s;
  }
  std::unique_ptr<FSWritableFile> file;
  IOStatus s = target_->ReopenWritableFile(f, opts, &file, dbg);
  if (!s.ok()) return s;
  auto it = files_.find(f);
  if (it == files_.end()) {
    files_[f] = FileState{size, size};  // untracked content counts as durable
  }
  NoteNewEntryLocked(f, existed);
  *r = std::make_unique<TrackedWritableFile>(std::move(file), this, f, size);
  return s;
}

IOStatus PowerLossFileSystem::ReuseWritableFile(
    const std::string& f, const std::string& old_f, const FileOptions& opts,
    std::unique_ptr<FSWritableFile>* r, IODebugContext* dbg) {
  // Recycling is a rename plus an overwrite; model it as both.
  IOStatus s = RenameFile(old_f, f, IOOptions(), dbg);
  if (!s.ok()) return s;
  return NewWritableFile(f, opts, r, dbg);
}

IOStatus PowerLossFileSystem::NewRandomRWFile(
    const std::string& f, const FileOptions& opts,
    std::unique_ptr<rocksdb::FSRandomRWFile>* r, IODebugContext* dbg) {
  // Not used by the queue store's configuration; gated, not tracked.
  std::lock_guard<std::mutex> lock(mu_);
  if (!AdmitLocked()) return PowerOff();
  return target_->NewRandomRWFile(f, opts, r, dbg);
}

IOStatus PowerLossFileSystem::NewDirectory(const std::string& name,
                                           const IOOptions& io_opts,
                                           std::unique_ptr<FSDirectory>* r,
                                           IODebugContext* dbg) {
  std::unique_ptr<FSDirectory> dir;
  IOStatus s = target_->NewDirectory(name, io_opts, &dir, dbg);
  if (!s.ok()) return s;
  *r = std::make_unique<TrackedDirectory>(std::move(dir), this,
                                          StripSlash(name));
  return s;
}

IOStatus PowerLossFileSystem::DeleteFile(const std::string& f,
                                         const IOOptions& opts,
                                         IODebugContext* dbg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!AdmitLocked()) return PowerOff();
  IOStatus s = target_->DeleteFile(f, opts, dbg);
  if (!s.ok()) return s;
  files_.erase(f);
  auto [dir, name] = SplitPath(f);
  auto d = pending_entries_.find(dir);
  if (d != pending_entries_.end()) {
    auto e = d->second.find(name);
    // Created and deleted without a directory sync: absent either way.
    if (e != d->second.end() && !e->second.has_value()) d->second.erase(e);
  }
  return s;
}

IOStatus PowerLossFileSystem::RenameFile(const std::string& src,
                                         const std::string& dst,
                                         const IOOptions& opts,
                                         IODebugContext* dbg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!AdmitLocked()) return PowerOff();
  // Remember what each entry durably was, unless an older state is pending.
  auto [src_dir, src_name] = SplitPath(src);
  auto [dst_dir, dst_name] = SplitPath(dst);
  std::optional<std::string> src_before = DurableContentLocked(src);
  std::optional<std::string> dst_before = DurableContentLocked(dst);
  IOStatus s = target_->RenameFile(src, dst, opts, dbg);
  if (!s.ok()) return s;
  pending_entries_[src_dir].emplace(src_name, std::move(src_before));
  pending_entries_[dst_dir].emplace(dst_name, std::move(dst_before));
  auto it = files_.find(src);
  if (it != files_.end()) {
    files_[dst] = it->second;
    files_.erase(src);
  } else {
    files_.erase(dst);  // untracked: its content counts as durable
  }
  return s;
}

IOStatus PowerLossFileSystem::LinkFile(const std::string& src,
                                       const std::string& dst,
                                       const IOOptions& opts,
                                       IODebugContext* dbg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!AdmitLocked()) return PowerOff();
  const bool existed = target_->FileExists(dst, IOOptions(), nullptr).ok();
  IOStatus s = target_->LinkFile(src, dst, opts, dbg);
  if (!s.ok()) return s;
  NoteNewEntryLocked(dst, existed);
  return s;
}

IOStatus PowerLossFileSystem::Truncate(const std::string& f, size_t size,
                                       const IOOptions& opts,
                                       IODebugContext* dbg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!AdmitLocked()) return PowerOff();
  IOStatus s = target_->Truncate(f, size, opts, dbg);
  if (s.ok()) OnTruncateLocked(f, size);
  return s;
}

absl::Status PowerLossFileSystem::DropUnsyncedData(LossStats* stats) {
  std::lock_guard<std::mutex> lock(mu_);
  LossStats local;
  for (const auto& [path, state] : files_) {
    uint64_t size = 0;
    if (!target_->GetFileSize(path, IOOptions(), &size, nullptr).ok()) {
      continue;  // deleted since
    }
    if (size <= state.synced) continue;
    // The Posix FileSystem has no Truncate: the files are real, use POSIX.
    if (::truncate(path.c_str(), static_cast<off_t>(state.synced)) != 0) {
      return absl::InternalError(
          absl::StrCat("truncate ", path, ": ", std::strerror(errno)));
    }
    ++local.files_truncated;
    local.bytes_dropped += static_cast<int64_t>(size - state.synced);
  }
  for (const auto& [dir, entries] : pending_entries_) {
    for (const auto& [name, before] : entries) {
      const std::string path = dir + "/" + name;
      if (!before.has_value()) {
        if (target_->FileExists(path, IOOptions(), nullptr).ok()) {
          IOStatus s = target_->DeleteFile(path, IOOptions(), nullptr);
          if (!s.ok()) {
            return absl::InternalError(
                absl::StrCat("remove ", path, ": ", s.ToString()));
          }
          ++local.files_removed;
        }
        continue;
      }
      std::unique_ptr<FSWritableFile> file;
      IOStatus s =
          target_->NewWritableFile(path, FileOptions(), &file, nullptr);
      if (s.ok()) s = file->Append(*before, IOOptions(), nullptr);
      if (s.ok()) s = file->Sync(IOOptions(), nullptr);
      if (s.ok()) s = file->Close(IOOptions(), nullptr);
      if (!s.ok()) {
        return absl::InternalError(
            absl::StrCat("restore ", path, ": ", s.ToString()));
      }
      ++local.files_restored;
    }
  }
  files_.clear();
  pending_entries_.clear();
  power_off_ = false;
  ops_ = 0;
  cut_at_ = 0;
  if (stats != nullptr) *stats = local;
  return absl::OkStatus();
}

std::unique_ptr<rocksdb::Env> NewEnvOnFileSystem(
    std::shared_ptr<rocksdb::FileSystem> fs) {
  return rocksdb::NewCompositeEnv(fs);
}

}  // namespace salvo::storage
