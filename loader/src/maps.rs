//! The maps of a dataplane: created from `maps-schema`, pinned, and reused only when compatible.
//!
//! A map is pinned at `<pin-dir>/maps/<name>@v<layout_version>`. Carrying the layout version in the
//! pin name makes an incompatible leftover visible to `ls` and lets weir refuse it before it opens
//! it. A pinned map with the current version is reused only if the kernel reports the same type,
//! key/value sizes, capacity and flags as the schema asks for; otherwise weir stops and says what
//! differs, rather than silently handing programs a map of another shape.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use maps_schema::MapDef;

use crate::error::Error;
use crate::object::MapProvider;
use crate::sys::bpf::{self, MapInfo};

/// The directory below the pin dir that holds maps.
pub const MAPS_DIR: &str = "maps";

/// The pin file name of a map: `<name>@v<version>`.
pub fn pin_name(def: &MapDef) -> String {
    format!("{}@v{}", def.name, def.layout_version)
}

/// Splits a pin file name into map name and layout version.
pub fn parse_pin_name(file: &str) -> Option<(&str, u32)> {
    let (name, version) = file.rsplit_once("@v")?;
    Some((name, version.parse().ok()?))
}

/// Lists how a pinned map (as the kernel reports it) differs from what `def` asks for.
/// Empty means it can be reused.
pub fn pinned_differences(info: &MapInfo, def: &MapDef, max_entries: u32) -> Vec<String> {
    let mut d = Vec::new();
    let mut cmp = |what: &str, pinned: u64, wanted: u64| {
        if pinned != wanted {
            d.push(format!(
                "{what} is {pinned} in the pinned map, {wanted} wanted"
            ));
        }
    };
    cmp("type", info.map_type.into(), def.map_type as u64);
    cmp("key size", info.key_size.into(), def.key.size.into());
    cmp("value size", info.value_size.into(), def.value.size.into());
    cmp("max_entries", info.max_entries.into(), max_entries.into());
    cmp("flags", info.flags.into(), def.flags.into());
    d
}

/// An open map of the dataplane.
#[derive(Debug)]
pub struct OpenMap {
    /// Its schema definition.
    pub def: &'static MapDef,
    /// The map fd.
    pub fd: OwnedFd,
    /// True when it was reused from a pin (its contents were kept).
    pub reused: bool,
    /// Where it is pinned, if it is.
    pub pin: Option<PathBuf>,
}

/// The set of maps one `weir load` works with, shared by all objects: the same map name in two
/// objects is the same kernel map.
#[derive(Debug, Default)]
pub struct MapSet {
    pin_dir: Option<PathBuf>,
    capacity: BTreeMap<String, u32>,
    maps: BTreeMap<&'static str, OpenMap>,
    /// Whether a pin of another layout version may be superseded by a new map (`weir load`,
    /// which then fills it from the config) rather than refused (`weir apply`).
    rebuild_layouts: bool,
    /// Pins of other layout versions a new map supersedes: (map, version, pin).
    superseded: Vec<(&'static str, u32, PathBuf)>,
}

impl MapSet {
    /// Maps that are pinned under `pin_dir` (created or reused).
    pub fn pinned(pin_dir: &Path) -> Self {
        Self {
            pin_dir: Some(pin_dir.to_owned()),
            rebuild_layouts: true,
            ..Self::default()
        }
    }

    /// Pins of older (or newer) layout versions that maps of this set supersede: `(map,
    /// version, pin)`. Every map weir has holds what the config says or counters, so it is
    /// rebuilt from the config; the caller removes these pins once the new dataplane runs.
    pub fn superseded(&self) -> &[(&'static str, u32, PathBuf)] {
        &self.superseded
    }

    /// Maps that live only as long as this process (for `weir verify`).
    pub fn ephemeral() -> Self {
        Self::default()
    }

    /// Overrides the capacity (max_entries) of a map, e.g. from the config.
    pub fn set_capacity(&mut self, map: &str, max_entries: u32) {
        self.capacity.insert(map.to_owned(), max_entries);
    }

    fn max_entries(&self, def: &MapDef) -> u32 {
        self.capacity
            .get(def.name)
            .copied()
            .unwrap_or(def.max_entries)
    }

    /// The open maps, by name.
    pub fn iter(&self) -> impl Iterator<Item = &OpenMap> {
        self.maps.values()
    }

    /// The open map called `name`.
    pub fn get(&self, name: &str) -> Option<&OpenMap> {
        self.maps.get(name)
    }

    /// Pin paths created by this set (not reused ones), for rollback.
    pub fn created_pins(&self) -> Vec<PathBuf> {
        self.maps
            .values()
            .filter(|m| !m.reused)
            .filter_map(|m| m.pin.clone())
            .collect()
    }

    /// Opens every map pinned under `pin_dir` that the schema defines (for `weir apply`, which
    /// changes contents only). Each is checked for compatibility as a reuse at load time is;
    /// `configure` sets capacities first, so a capacity change in the config is reported.
    ///
    /// # Errors
    /// Returns an error when a pin cannot be opened or is incompatible.
    pub fn open_pinned(pin_dir: &Path, configure: impl FnOnce(&mut Self)) -> Result<Self, Error> {
        let mut set = Self::pinned(pin_dir);
        set.rebuild_layouts = false;
        configure(&mut set);
        for def in maps_schema::MAPS {
            if let Some(open) = set.open_existing(def)? {
                set.maps.insert(def.name, open);
            }
        }
        Ok(set)
    }

    /// Opens the pinned maps named in `names` with the capacity they were pinned with, for a
    /// command that works without the config (`weir set`); the other checks of
    /// [`MapSet::open_pinned`] apply. Maps without a pin are left out.
    ///
    /// # Errors
    /// A pin that cannot be opened or is incompatible with the schema.
    pub fn open_pinned_as_is(pin_dir: &Path, names: &[&str]) -> Result<Self, Error> {
        let mut set = Self::pinned(pin_dir);
        set.rebuild_layouts = false;
        for def in maps_schema::MAPS.iter().filter(|d| names.contains(&d.name)) {
            let path = pin_dir.join(MAPS_DIR).join(pin_name(def));
            if let Ok(info) = bpf::obj_get(&path).and_then(|fd| bpf::map_info(fd.as_fd())) {
                set.set_capacity(def.name, info.max_entries);
            }
            if let Some(open) = set.open_existing(def)? {
                set.maps.insert(def.name, open);
            }
        }
        Ok(set)
    }

    fn pin_path(&self, def: &MapDef) -> Option<PathBuf> {
        self.pin_dir
            .as_ref()
            .map(|dir| dir.join(MAPS_DIR).join(pin_name(def)))
    }

    /// Opens the pinned map of `def` if there is one, refusing an incompatible one. A pin of
    /// another layout version is superseded (load) or refused (apply).
    fn open_existing(&mut self, def: &'static MapDef) -> Result<Option<OpenMap>, Error> {
        let Some(dir) = self.pin_dir.clone() else {
            return Ok(None);
        };
        for (version, pin) in other_versions(&dir.join(MAPS_DIR), def)? {
            if !self.rebuild_layouts {
                return Err(Error::map(
                    def.name,
                    format!(
                        "the map pinned at {} has layout version {version}, this weir uses version {}; \
                         run `weir load` with this weir first (it rebuilds the map from the config)",
                        pin.display(),
                        def.layout_version
                    ),
                ));
            }
            log::info!(
                "map '{}': layout v{version} pinned, this weir uses v{}: a new map is filled from the config",
                def.name,
                def.layout_version
            );
            self.superseded.push((def.name, version, pin));
        }
        let path = dir.join(MAPS_DIR).join(pin_name(def));
        let fd = match bpf::obj_get(&path) {
            Ok(fd) => fd,
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => {
                return Err(Error::bpf(
                    format!("map '{}': opening pin {}", def.name, path.display()),
                    e,
                ))
            }
        };
        let info =
            bpf::map_info(fd.as_fd()).map_err(|e| Error::bpf(format!("map '{}'", def.name), e))?;
        let d = pinned_differences(&info, def, self.max_entries(def));
        if !d.is_empty() {
            return Err(Error::map(
                def.name,
                format!(
                    "the map pinned at {} is not compatible: {}. Run `weir unload` (its contents are lost) or point --pin-dir elsewhere",
                    path.display(),
                    d.join("; ")
                ),
            ));
        }
        log::debug!("map '{}': reusing pinned map id {}", def.name, info.id);
        Ok(Some(OpenMap {
            def,
            fd,
            reused: true,
            pin: Some(path),
        }))
    }

    /// Creates the map of `def` (pinning it when this set pins).
    fn create(
        &self,
        def: &'static MapDef,
        btf: Option<(BorrowedFd<'_>, u32, u32)>,
    ) -> Result<OpenMap, Error> {
        let max_entries = self.max_entries(def);
        let (btf_fd, key_id, value_id) = match btf {
            // The kernel refuses BTF key/value types on socket maps (ENOTSUPP, 524).
            Some(_) if def.map_type == maps_schema::MapType::SockHash => (None, 0, 0),
            Some((fd, k, v)) => (Some(fd), k, v),
            None => (None, 0, 0),
        };
        let fd = bpf::map_create(&bpf::MapCreate {
            name: def.name,
            map_type: def.map_type as u32,
            key_size: def.key.size,
            value_size: def.value.size,
            max_entries,
            flags: def.flags,
            btf_fd,
            btf_key_type_id: key_id,
            btf_value_type_id: value_id,
            map_extra: 0,
        })
        .map_err(|e| Error::bpf(format!("map '{}'", def.name), e))?;
        let pin = self.pin_path(def);
        if let Some(path) = &pin {
            bpf::obj_pin(fd.as_fd(), path).map_err(|e| {
                Error::bpf(
                    format!("map '{}': pinning at {}", def.name, path.display()),
                    e,
                )
            })?;
        }
        log::debug!("map '{}': created ({} entries)", def.name, max_entries);
        Ok(OpenMap {
            def,
            fd,
            reused: false,
            pin,
        })
    }
}

/// Pins of the same map with another layout version: `(version, path)`.
fn other_versions(maps_dir: &Path, def: &MapDef) -> Result<Vec<(u32, PathBuf)>, Error> {
    let entries = match std::fs::read_dir(maps_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", maps_dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some((name, version)) = file.to_str().and_then(parse_pin_name) else {
            continue;
        };
        if name == def.name && version != def.layout_version {
            out.push((version, entry.path()));
        }
    }
    Ok(out)
}

impl MapProvider for MapSet {
    fn map_fd(
        &mut self,
        def: &'static MapDef,
        btf: Option<(BorrowedFd<'_>, u32, u32)>,
    ) -> Result<BorrowedFd<'_>, Error> {
        if !self.maps.contains_key(def.name) {
            let open = match self.open_existing(def)? {
                Some(open) => open,
                None => self.create(def, btf)?,
            };
            self.maps.insert(def.name, open);
        }
        Ok(self.maps[def.name].fd.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_for(def: &MapDef) -> MapInfo {
        MapInfo {
            map_type: def.map_type as u32,
            key_size: def.key.size,
            value_size: def.value.size,
            max_entries: def.max_entries,
            flags: def.flags,
            ..MapInfo::default()
        }
    }

    #[test]
    fn pin_names_round_trip() {
        let def = maps_schema::find("if_counters").unwrap();
        let name = pin_name(def);
        assert_eq!(
            parse_pin_name(&name),
            Some(("if_counters", def.layout_version))
        );
        assert_eq!(parse_pin_name("no-version"), None);
        assert_eq!(parse_pin_name("x@vx"), None);
    }

    #[test]
    fn compatible_pin_has_no_differences_and_each_difference_is_named() {
        let def = maps_schema::find("if_counters").unwrap();
        let info = info_for(def);
        assert!(pinned_differences(&info, def, def.max_entries).is_empty());
        let bigger = MapInfo {
            value_size: def.value.size + 8,
            ..info.clone()
        };
        let d = pinned_differences(&bigger, def, def.max_entries);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("value size is"), "{d:?}");
        let d = pinned_differences(&info, def, def.max_entries * 2);
        assert!(d[0].starts_with("max_entries"), "{d:?}");
    }
}
