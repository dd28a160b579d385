module github.com/reproducible-choria/deployment

go 1.25.0
