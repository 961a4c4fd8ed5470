//! CSV reading and writing: the happy paths and one test per bad-input case.

use kiln_data::{
    parse_csv, parse_features, parse_features_with, read_csv, read_features, to_csv_string,
    write_csv, CsvOptions, Error, TaskHint,
};
use ndarray::array;

fn reg() -> CsvOptions {
    CsvOptions::default()
}

fn cls() -> CsvOptions {
    CsvOptions {
        task: TaskHint::Classification,
        ..CsvOptions::default()
    }
}

fn err(text: &str, opts: &CsvOptions) -> Error {
    parse_csv(text, "t.csv", opts).unwrap_err()
}

#[test]
fn reads_regression_with_default_target_and_features() {
    let d = parse_csv("a,b,y\n1,2,3.5\n4,5e-1,-6\n", "t.csv", &reg()).unwrap();
    assert_eq!(d.x, array![[1.0, 2.0], [4.0, 0.5]]);
    assert_eq!(d.y, array![3.5, -6.0]);
    assert_eq!(d.feature_names, ["a", "b"]);
    assert_eq!(d.target_name, "y");
    assert_eq!(d.classes, None);
}

#[test]
fn target_and_features_by_name_in_the_given_order() {
    let text = "id,y,b,a,c\n1,10,2,3,4\n2,20,5,6,7\n";
    let opts = CsvOptions {
        target: Some("y".into()),
        features: Some(vec!["a".into(), "b".into()]),
        ..reg()
    };
    let d = parse_csv(text, "t.csv", &opts).unwrap();
    assert_eq!(d.x, array![[3.0, 2.0], [6.0, 5.0]]);
    assert_eq!(d.y, array![10.0, 20.0]);
    assert_eq!(d.feature_names, ["a", "b"]);
    // Default features: every column but the target, in file order.
    let opts = CsvOptions {
        target: Some("y".into()),
        ..reg()
    };
    let d = parse_csv(text, "t.csv", &opts).unwrap();
    assert_eq!(d.feature_names, ["id", "b", "a", "c"]);
}

#[test]
fn bom_crlf_quotes_blank_lines_and_spaces_are_accepted() {
    let text = "\u{feff}\"a\", b ,label\r\n1, 2 ,\"x\"\r\n\r\n3,4,y\r\n";
    let d = parse_csv(text, "t.csv", &cls()).unwrap();
    assert_eq!(d.feature_names, ["a", "b"]);
    assert_eq!(d.target_name, "label");
    assert_eq!(d.x, array![[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(d.classes.unwrap(), ["x", "y"]);
}

#[test]
fn numeric_classes_sort_numerically_and_keep_their_text() {
    let d = parse_csv("f,t\n1,10\n2,2\n3,10\n4,-1\n5,2.0\n", "t.csv", &cls()).unwrap();
    // 2 and 2.0 are the same number, so one class, named by the first text seen.
    assert_eq!(d.classes.unwrap(), ["-1", "2", "10"]);
    assert_eq!(d.y, array![2.0, 1.0, 2.0, 0.0, 1.0]);
}

#[test]
fn text_classes_sort_lexicographically() {
    let d = parse_csv(
        "f,t\n1,virginica\n2,setosa\n3,10\n4,versicolor\n",
        "t.csv",
        &cls(),
    )
    .unwrap();
    assert_eq!(
        d.classes.unwrap(),
        ["10", "setosa", "versicolor", "virginica"]
    );
    assert_eq!(d.y, array![3.0, 1.0, 0.0, 2.0]);
}

#[test]
fn non_numeric_feature_names_row_column_and_value() {
    let e = err("a,b,y\n1,2,3\n4,abc,6\n", &reg());
    assert!(
        matches!(&e, Error::NotANumber { row: 3, column, value, .. } if column == "b" && value == "abc"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("t.csv") && msg.contains("row 3") && msg.contains("\"abc\""),
        "{msg}"
    );
}

#[test]
fn empty_feature_cell() {
    let e = err("a,b,y\n1,2,3\n4,,6\n", &reg());
    assert!(
        matches!(&e, Error::EmptyCell { row: 3, column, target: false, .. } if column == "b"),
        "{e:?}"
    );
    assert!(e.to_string().contains("row 3, column \"b\""), "{e}");
}

#[test]
fn nan_feature_cell() {
    for nan in ["nan", "NaN", "NAN", "-nan"] {
        let e = err(&format!("a,y\n1,3\n{nan},6\n"), &reg());
        assert!(
            matches!(&e, Error::NanCell { row: 3, column, value, .. } if column == "a" && value == nan),
            "{nan}: {e:?}"
        );
    }
}

#[test]
fn infinite_cell() {
    for inf in ["inf", "-Infinity", "1e999"] {
        let e = err(&format!("a,y\n{inf},3\n"), &reg());
        assert!(
            matches!(&e, Error::Infinite { row: 2, column, value, .. } if column == "a" && value == inf),
            "{inf}: {e:?}"
        );
    }
    // Infinite values are not "missing", even when missing values are allowed.
    let opts = CsvOptions {
        allow_missing: true,
        ..reg()
    };
    assert!(matches!(err("a,y\ninf,3\n", &opts), Error::Infinite { .. }));
}

#[test]
fn ragged_row() {
    let e = err("a,b,y\n1,2,3\n4,5\n", &reg());
    assert!(
        matches!(
            e,
            Error::Ragged {
                row: 3,
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("expected 3 fields"), "{e}");
    let e = err("a,b,y\n1,2,3,4\n", &reg());
    assert!(
        matches!(
            e,
            Error::Ragged {
                row: 2,
                expected: 3,
                got: 4,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn missing_target_column_lists_the_columns() {
    let opts = CsvOptions {
        target: Some("price".into()),
        ..reg()
    };
    let e = err("a,b,y\n1,2,3\n", &opts);
    assert!(
        matches!(&e, Error::MissingColumn { role: "target", name, .. } if name == "price"),
        "{e:?}"
    );
    assert!(e.to_string().contains("a, b, y"), "{e}");
}

#[test]
fn missing_feature_column_lists_the_columns() {
    let opts = CsvOptions {
        features: Some(vec!["a".into(), "zz".into()]),
        ..reg()
    };
    let e = err("a,b,y\n1,2,3\n", &opts);
    assert!(
        matches!(&e, Error::MissingColumn { role: "feature", name, .. } if name == "zz"),
        "{e:?}"
    );
    assert!(e.to_string().contains("a, b, y"), "{e}");
}

#[test]
fn target_listed_as_feature_or_feature_twice() {
    let opts = CsvOptions {
        features: Some(vec!["a".into(), "y".into()]),
        ..reg()
    };
    assert!(matches!(err("a,y\n1,2\n", &opts), Error::TargetIsFeature { name, .. } if name == "y"));
    let opts = CsvOptions {
        features: Some(vec!["a".into(), "a".into()]),
        ..reg()
    };
    assert!(
        matches!(err("a,y\n1,2\n", &opts), Error::DuplicateFeature { name, .. } if name == "a")
    );
    let opts = CsvOptions {
        features: Some(vec![]),
        ..reg()
    };
    assert!(matches!(err("a,y\n1,2\n", &opts), Error::NoFeatures { .. }));
    // A single column leaves nothing to be a feature.
    assert!(matches!(err("y\n1\n", &reg()), Error::NoFeatures { .. }));
}

#[test]
fn empty_file() {
    for text in ["", "\u{feff}", "\n\n", "\r\n"] {
        let e = err(text, &reg());
        assert!(matches!(e, Error::Empty { .. }), "{text:?}: {e:?}");
        assert!(e.to_string().contains("empty"), "{e}");
    }
}

#[test]
fn header_only() {
    let e = err("a,b,y\n", &reg());
    assert!(
        matches!(&e, Error::NoRows { columns, .. } if columns.len() == 3),
        "{e:?}"
    );
    assert!(e.to_string().contains("no data rows"), "{e}");
    assert!(matches!(err("a,b,y", &reg()), Error::NoRows { .. }));
}

#[test]
fn duplicate_column_names() {
    let e = err("a,b,a,y\n1,2,3,4\n", &reg());
    assert!(
        matches!(&e, Error::DuplicateColumn { name, first: 1, second: 3, .. } if name == "a"),
        "{e:?}"
    );
}

#[test]
fn empty_column_name() {
    let e = err(",a,y\n0,1,2\n", &reg());
    assert!(
        matches!(e, Error::EmptyColumnName { column: 1, .. }),
        "{e:?}"
    );
}

#[test]
fn regression_target_must_be_a_number() {
    let e = err("a,y\n1,2\n3,big\n", &reg());
    assert!(
        matches!(&e, Error::TextTarget { row: 3, column, value, .. } if column == "y" && value == "big"),
        "{e:?}"
    );
    assert!(e.to_string().contains("classification"), "{e}");
}

#[test]
fn targets_may_never_be_missing() {
    let missing = CsvOptions {
        allow_missing: true,
        ..reg()
    };
    for opts in [reg(), cls(), missing] {
        let e = err("a,y\n1,2\n3,\n", &opts);
        assert!(
            matches!(
                &e,
                Error::EmptyCell {
                    row: 3,
                    target: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("targets may never be missing"),
            "{e}"
        );
        let e = err("a,y\n1,NaN\n", &opts);
        assert!(
            matches!(
                &e,
                Error::NanCell {
                    row: 2,
                    target: true,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}

#[test]
fn allow_missing_reads_empty_and_nan_features_as_nan() {
    let opts = CsvOptions {
        allow_missing: true,
        ..reg()
    };
    let d = parse_csv(
        "a,b,y\n,1,0\nnan,NA,1\n2,N/A,2\nnull,None,3\n",
        "t.csv",
        &opts,
    )
    .unwrap();
    let nan = |r: usize, c: usize| d.x[[r, c]].is_nan();
    assert!(nan(0, 0) && nan(1, 0) && nan(1, 1) && nan(2, 1) && nan(3, 0) && nan(3, 1));
    assert_eq!(d.x[[0, 1]], 1.0);
    assert_eq!(d.x[[2, 0]], 2.0);
    // Without the option the same markers are errors.
    assert!(matches!(
        err("a,y\nNA,1\n", &reg()),
        Error::NotANumber { .. }
    ));
    // Other text is still an error with the option.
    assert!(matches!(
        err("a,y\nabc,1\n", &opts),
        Error::NotANumber { .. }
    ));
}

#[test]
fn errors_count_rows_as_a_spreadsheet_does() {
    // Row numbers are line numbers: a blank line still counts.
    let e = err("a,y\n1,2\n\n3,x\n", &reg());
    assert!(matches!(e, Error::TextTarget { row: 4, .. }), "{e:?}");
    let e = err("a,y\r\n1,2\r\n\r\n\r\n3,x\r\n", &reg());
    assert!(matches!(e, Error::TextTarget { row: 5, .. }), "{e:?}");
    // A quoted field spanning lines: the row is the line where the record starts.
    let e = err("a,y\n1,\"2\n\"\nz,3\n", &reg());
    assert!(matches!(e, Error::NotANumber { row: 4, .. }), "{e:?}");
}

#[test]
fn features_for_prediction_ignore_other_columns() {
    let text = "target,b,id,a\nyes,2,x,1\nno,4,y,3\n";
    let x = parse_features(text, "p.csv", &["a".into(), "b".into()]).unwrap();
    assert_eq!(x, array![[1.0, 2.0], [3.0, 4.0]]);
    let e = parse_features(text, "p.csv", &["a".into(), "c".into()]).unwrap_err();
    assert!(
        matches!(&e, Error::MissingColumn { name, .. } if name == "c"),
        "{e:?}"
    );
    assert!(e.to_string().contains("target, b, id, a"), "{e}");
    let e = parse_features("a\n1\nx\n", "p.csv", &["a".into()]).unwrap_err();
    assert!(matches!(e, Error::NotANumber { row: 3, .. }), "{e:?}");
    let x = parse_features_with("a\n1\n\n", "p.csv", &["a".into()], true).unwrap();
    assert_eq!(x, array![[1.0]]);
    let x = parse_features_with("a,b\n1,\n", "p.csv", &["b".into()], true).unwrap();
    assert!(x[[0, 0]].is_nan());
}

#[test]
fn write_then_read_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let d = parse_csv(
        "w,z,kind\n0.1,1e-7,cat\n-2.5,123456789012345680000,dog\n3,0,cat\n",
        "t.csv",
        &cls(),
    )
    .unwrap();
    write_csv(&path, &d).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("w,z,kind\n0.1,1e-7,cat\n"), "{text}");
    let back = read_csv(&path, &cls()).unwrap();
    assert_eq!(back, d);
    let x = read_features(&path, &["z".into()]).unwrap();
    assert_eq!(x.column(0), d.x.column(1));

    // Regression, awkward numbers and names that need quoting.
    let r = kiln_core::Dataset::regression(
        array![[std::f64::consts::PI, -0.0], [1e300, 5e-324]],
        array![0.1 + 0.2, -7.0],
        vec!["a,b".into(), "say \"hi\"".into()],
        "y",
    )
    .unwrap();
    write_csv(&path, &r).unwrap();
    let back = read_csv(&path, &reg()).unwrap();
    assert_eq!(back, r);
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn write_rejects_inconsistent_datasets_and_bad_paths() {
    let mut d = kiln_core::Dataset::classification(
        array![[1.0], [2.0]],
        array![0.0, 1.0],
        vec!["a".into()],
        "y",
        vec!["n".into(), "p".into()],
    )
    .unwrap();
    d.y[1] = 5.0;
    let e = to_csv_string(&d).unwrap_err();
    assert!(e.to_string().contains("class index 5"), "{e}");
    d.feature_names.push("b".into());
    assert!(to_csv_string(&d).is_err());
    let ok = parse_csv("a,y\n1,2\n", "t.csv", &reg()).unwrap();
    let e = write_csv(std::path::Path::new("/no/such/dir/x.csv"), &ok).unwrap_err();
    assert!(e.to_string().contains("/no/such/dir/x.csv"), "{e}");
}

#[test]
fn read_errors_name_the_path() {
    let e = read_csv(std::path::Path::new("/no/such/file.csv"), &reg()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("/no/such/file.csv"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, b"a,y\n1,2\n\xff,3\n").unwrap();
    let e = read_csv(&path, &reg()).unwrap_err();
    assert!(matches!(e, Error::NotUtf8 { row: 3, .. }), "{e:?}");
    let e = read_csv(&path.with_file_name("x.csv"), &reg()).unwrap_err();
    assert!(e.to_string().contains("x.csv"), "{e}");
}

#[test]
fn malformed_quoting_never_panics() {
    // Odd inputs must give a dataset or an error, never a panic.
    for text in [
        "a,y\n\"1,2\n",
        "a,y\n1\"\",2\n",
        "\"\n",
        "a,y\n\"\"\"\",1\n",
        ",\n,\n",
        "a,y\n1,2,\n",
    ] {
        let _ = parse_csv(text, "t.csv", &reg());
        let _ = parse_csv(text, "t.csv", &cls());
        let _ = parse_features(text, "t.csv", &["a".into()]);
    }
}
