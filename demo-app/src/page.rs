//! Offset/limit paging shared by every list endpoint.

use serde::Serialize;

/// Which slice of an id-ordered listing to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Items to skip.
    pub offset: usize,
    /// Items to return at most, already clamped.
    pub limit: usize,
}

/// The `paging` object of every list response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Paging {
    pub offset: usize,
    pub limit: usize,
    /// Matching items across all pages.
    pub total: usize,
}

impl PageRequest {
    /// Applies this request to an ordered iterator of `total` matching items.
    pub fn apply<T>(self, items: impl Iterator<Item = T>, total: usize) -> (Vec<T>, Paging) {
        let page = items.skip(self.offset).take(self.limit).collect();
        let paging = Paging { offset: self.offset, limit: self.limit, total };
        (page, paging)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_slices_and_reports_total() {
        let request = PageRequest { offset: 2, limit: 2 };
        let (page, paging) = request.apply(1..=5, 5);
        assert_eq!(page, vec![3, 4]);
        assert_eq!(paging, Paging { offset: 2, limit: 2, total: 5 });
    }
}
