// Shared content cache and in-flight table (see content_cache.h).
#include "engine/delivery/content_cache.h"

#include <utility>

namespace salvo::delivery {

absl::StatusOr<std::shared_ptr<const CachedContent>> ContentCache::Get(
    uint64_t id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = map_.find(id);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return it->second.entry;
    }
  }
  loads_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<storage::Content> content = store_->GetContent(id);
  if (!content.ok()) return content.status();
  auto entry = std::make_shared<CachedContent>();
  entry->content = *std::move(content);
  auto compiled = render::CompiledContent::Compile(entry->content);
  if (!compiled.ok()) return compiled.status();
  entry->compiled = *std::move(compiled);
  auto state = store_->GetContentState(id);
  if (!state.ok()) return state.status();
  entry->state.store(static_cast<uint8_t>(*state));
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = map_.try_emplace(id);
  if (!inserted) {  // another thread loaded it meanwhile: share theirs
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.entry;
  }
  lru_.push_front(id);
  it->second.entry = std::move(entry);
  it->second.lru = lru_.begin();
  std::shared_ptr<const CachedContent> result = it->second.entry;
  while (map_.size() > capacity_) {
    map_.erase(lru_.back());
    lru_.pop_back();
  }
  return result;
}

size_t ContentCache::size() const {
  absl::MutexLock lock(&mu_);
  return map_.size();
}

void ContentCache::SetState(uint64_t id, storage::ContentState state) {
  absl::MutexLock lock(&mu_);
  auto it = map_.find(id);
  if (it != map_.end()) {
    it->second.entry->state.store(static_cast<uint8_t>(state));
  }
}

void InFlightTable::Add(uint64_t content_id, int64_t delta) {
  absl::MutexLock lock(&mu_);
  int64_t& v = map_[content_id];
  v += delta;
  if (v == 0) map_.erase(content_id);
}

int64_t InFlightTable::Get(uint64_t content_id) const {
  absl::MutexLock lock(&mu_);
  auto it = map_.find(content_id);
  return it == map_.end() ? 0 : it->second;
}

}  // namespace salvo::delivery
