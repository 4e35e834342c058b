"""What people read: the DVC metrics and plots files (dvc_files), the figures and the
summary render-figures writes (figures, render), and the pull request's metrics report
(pull_request)."""
